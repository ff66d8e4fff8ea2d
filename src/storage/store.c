/* storage/store: see store.h. The only file that calls rocksdb_*. */
#include "storage/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "evbus/errors.h"

struct store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts;
    rocksdb_block_based_table_options_t *topts;
    rocksdb_cache_t *cache;
};

struct store_batch {
    rocksdb_writebatch_t *wb;
};

struct store_iter {
    rocksdb_iterator_t *it;
    rocksdb_readoptions_t *ropts;
    char *lower, *upper;
};

static int take_err(char *rerr, char *err, size_t err_len)
{
    if (rerr == NULL)
        return 0;
    if (err && err_len)
        snprintf(err, err_len, "rocksdb: %s", rerr);
    rocksdb_free(rerr);
    return EVBUS_EIO;
}

int store_open(const char *path, store **out, char *err, size_t err_len)
{
    store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return EVBUS_ENOMEM;
    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    /* Sized so the 2-core target machine does not stall writes under sustained publishing: a
     * few large memtables, background work limited to the cores we have. */
    rocksdb_options_set_write_buffer_size(s->opts, 64u << 20);
    rocksdb_options_set_max_write_buffer_number(s->opts, 4);
    rocksdb_options_set_max_background_jobs(s->opts, 2);
    rocksdb_options_set_level0_slowdown_writes_trigger(s->opts, 20);
    rocksdb_options_set_level0_stop_writes_trigger(s->opts, 36);
    rocksdb_options_set_compression(s->opts, rocksdb_lz4_compression);
    rocksdb_options_set_max_open_files(s->opts, 512);
    s->cache = rocksdb_cache_create_lru(64u << 20);
    s->topts = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(s->topts, s->cache);
    rocksdb_options_set_block_based_table_factory(s->opts, s->topts);
    s->wopts = rocksdb_writeoptions_create();
    /* No fsync per write: the Raft log is the durable record (see store.h). */
    rocksdb_writeoptions_set_sync(s->wopts, 0);
    s->ropts = rocksdb_readoptions_create();
    char *rerr = NULL;
    s->db = rocksdb_open(s->opts, path, &rerr);
    if (rerr != NULL) {
        int rv = take_err(rerr, err, err_len);
        s->db = NULL;
        store_close(s);
        return rv;
    }
    *out = s;
    return 0;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    if (s->db)
        rocksdb_close(s->db);
    if (s->ropts)
        rocksdb_readoptions_destroy(s->ropts);
    if (s->wopts)
        rocksdb_writeoptions_destroy(s->wopts);
    if (s->opts)
        rocksdb_options_destroy(s->opts);
    if (s->topts)
        rocksdb_block_based_options_destroy(s->topts);
    if (s->cache)
        rocksdb_cache_destroy(s->cache);
    free(s);
}

store_batch *store_batch_new(void)
{
    store_batch *b = malloc(sizeof(*b));
    if (b == NULL)
        return NULL;
    b->wb = rocksdb_writebatch_create();
    return b;
}

void store_batch_put(store_batch *b, const void *k, size_t klen, const void *v, size_t vlen)
{
    rocksdb_writebatch_put(b->wb, k, klen, v, vlen);
}

void store_batch_delete(store_batch *b, const void *k, size_t klen)
{
    rocksdb_writebatch_delete(b->wb, k, klen);
}

void store_batch_delete_range(store_batch *b, const void *begin, size_t blen, const void *end,
                              size_t elen)
{
    rocksdb_writebatch_delete_range(b->wb, begin, blen, end, elen);
}

void store_batch_clear(store_batch *b)
{
    rocksdb_writebatch_clear(b->wb);
}

size_t store_batch_count(store_batch *b)
{
    return (size_t)rocksdb_writebatch_count(b->wb);
}

void store_batch_free(store_batch *b)
{
    if (b == NULL)
        return;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

int store_write(store *s, store_batch *b, char *err, size_t err_len)
{
    char *rerr = NULL;
    rocksdb_write(s->db, s->wopts, b->wb, &rerr);
    return take_err(rerr, err, err_len);
}

int store_get(store *s, const void *k, size_t klen, char **val, size_t *vlen)
{
    char *rerr = NULL;
    size_t n = 0;
    char *v = rocksdb_get(s->db, s->ropts, k, klen, &n, &rerr);
    if (rerr != NULL)
        return take_err(rerr, NULL, 0);
    if (v == NULL)
        return EVBUS_ENOTFOUND;
    /* Hand the caller plain malloc() memory so it never needs rocksdb_free. */
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        rocksdb_free(v);
        return EVBUS_ENOMEM;
    }
    memcpy(copy, v, n);
    copy[n] = '\0';
    rocksdb_free(v);
    *val = copy;
    *vlen = n;
    return 0;
}

int store_flush_wal(store *s, int sync)
{
    char *rerr = NULL;
    rocksdb_flush_wal(s->db, (unsigned char)sync, &rerr);
    return take_err(rerr, NULL, 0);
}

void store_compact_range(store *s, const void *begin, size_t blen, const void *end, size_t elen)
{
    rocksdb_compact_range(s->db, begin, blen, end, elen);
}

store_iter *store_iter_new(store *s, const void *lower, size_t llen, const void *upper, size_t ulen)
{
    store_iter *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return NULL;
    it->ropts = rocksdb_readoptions_create();
    if (lower) {
        it->lower = malloc(llen ? llen : 1);
        memcpy(it->lower, lower, llen);
        rocksdb_readoptions_set_iterate_lower_bound(it->ropts, it->lower, llen);
    }
    if (upper) {
        it->upper = malloc(ulen ? ulen : 1);
        memcpy(it->upper, upper, ulen);
        rocksdb_readoptions_set_iterate_upper_bound(it->ropts, it->upper, ulen);
    }
    it->it = rocksdb_create_iterator(s->db, it->ropts);
    if (lower)
        rocksdb_iter_seek(it->it, lower, llen);
    else
        rocksdb_iter_seek_to_first(it->it);
    return it;
}

void store_iter_seek(store_iter *it, const void *k, size_t klen)
{
    rocksdb_iter_seek(it->it, k, klen);
}
int store_iter_valid(store_iter *it)
{
    return rocksdb_iter_valid(it->it);
}
void store_iter_next(store_iter *it)
{
    rocksdb_iter_next(it->it);
}

const uint8_t *store_iter_key(store_iter *it, size_t *len)
{
    return (const uint8_t *)rocksdb_iter_key(it->it, len);
}

const uint8_t *store_iter_value(store_iter *it, size_t *len)
{
    return (const uint8_t *)rocksdb_iter_value(it->it, len);
}

int store_iter_status(store_iter *it, char *err, size_t err_len)
{
    char *rerr = NULL;
    rocksdb_iter_get_error(it->it, &rerr);
    return take_err(rerr, err, err_len);
}

void store_iter_free(store_iter *it)
{
    if (it == NULL)
        return;
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ropts);
    free(it->lower);
    free(it->upper);
    free(it);
}

int store_property_u64(store *s, const char *name, uint64_t *out)
{
    return rocksdb_property_int(s->db, name, out) == 0 ? 0 : EVBUS_ENOTFOUND;
}

uint64_t store_approximate_size(store *s, const void *begin, size_t blen, const void *end,
                                size_t elen)
{
    const char *b = begin, *e = end;
    uint64_t size = 0;
    char *rerr = NULL;
    rocksdb_approximate_sizes(s->db, 1, &b, &blen, &e, &elen, &size, &rerr);
    if (rerr)
        rocksdb_free(rerr);
    return size;
}
