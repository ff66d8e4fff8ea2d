/*
 * storage/store: every RocksDB call of evbus. One database, one column family.
 *
 * Durability: the Raft log is the write-ahead log of the state machine. RocksDB
 * keeps its own WAL on but writes without fsync (a process crash loses nothing:
 * the bytes are in the page cache); store_flush_wal(sync=1) is called when a
 * Raft snapshot is taken, so RocksDB is durable up to every index Raft may drop
 * from its log. Each applied Raft entry is one atomic batch that includes the
 * applied index, so recovery skips entries already in RocksDB.
 *
 * Iterators and gets may run on worker threads (RocksDB is thread-safe);
 * writes happen on the loop thread only.
 */
#ifndef EVBUS_STORAGE_STORE_H
#define EVBUS_STORAGE_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store store;
typedef struct store_batch store_batch;
typedef struct store_iter store_iter;

/* Opens (creating if missing) the database at `path`. 0 or EVBUS_EIO with RocksDB's text in err. */
int store_open(const char *path, store **out, char *err, size_t err_len);
void store_close(store *s);

store_batch *store_batch_new(void);
void store_batch_put(store_batch *b, const void *k, size_t klen, const void *v, size_t vlen);
void store_batch_delete(store_batch *b, const void *k, size_t klen);
/* Deletes [begin, end). */
void store_batch_delete_range(store_batch *b, const void *begin, size_t blen, const void *end,
                              size_t elen);
void store_batch_clear(store_batch *b);
size_t store_batch_count(store_batch *b);
void store_batch_free(store_batch *b);

/* Applies the batch atomically. 0 or EVBUS_EIO (err gets RocksDB's text). */
int store_write(store *s, store_batch *b, char *err, size_t err_len);

/* Reads a value: *val is from malloc() and owned by the caller (free()). Returns 0,
 * EVBUS_ENOTFOUND, or EVBUS_EIO. */
int store_get(store *s, const void *k, size_t klen, char **val, size_t *vlen);

/* Writes RocksDB's WAL to disk (sync=1: and fsyncs it). 0 or EVBUS_EIO. */
int store_flush_wal(store *s, int sync);

/* Compacts [begin, end) to reclaim space after range deletes (blocking: run it off the loop). */
void store_compact_range(store *s, const void *begin, size_t blen, const void *end, size_t elen);

/* An iterator over [lower, upper) (upper may be NULL). Borrowed bounds are copied. */
store_iter *store_iter_new(store *s, const void *lower, size_t llen, const void *upper,
                           size_t ulen);
void store_iter_seek(store_iter *it, const void *k, size_t klen);
int store_iter_valid(store_iter *it);
void store_iter_next(store_iter *it);
/* Borrowed: valid until the iterator moves. */
const uint8_t *store_iter_key(store_iter *it, size_t *len);
const uint8_t *store_iter_value(store_iter *it, size_t *len);
/* 0 or EVBUS_EIO when iteration stopped on an error. */
int store_iter_status(store_iter *it, char *err, size_t err_len);
void store_iter_free(store_iter *it);

/* Integer property such as "rocksdb.is-write-stopped". 0 or EVBUS_ENOTFOUND. */
int store_property_u64(store *s, const char *name, uint64_t *out);

/* Approximate bytes on disk for [begin, end). */
uint64_t store_approximate_size(store *s, const void *begin, size_t blen, const void *end,
                                size_t elen);

#endif
