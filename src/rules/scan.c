/*
 * rules/scan: the path table and the one-pass event scanner (see scan.h for
 * the model and invariants).
 *
 * The walker is one iterative state machine (no recursion, so a hostile
 * 2048-deep event cannot exhaust a small thread stack) over a stack of frames,
 * one per object or array entered under a named path. A value under no named
 * path is skipped by skip_value(), itself iterative, which validates as it
 * goes. Strings are scanned 16 bytes at a time with SSE2 where available:
 * the block is accepted when it holds no quote, backslash, control byte or
 * non-ASCII byte; otherwise the first such byte is handled alone.
 */
#include "rules/scan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "evbus/errors.h"
#include "rules/mem.h"

#define PATHS_SEED 0x5ca1ab1e0ddba11ull
#define EDGE_SEED 0x0dd5eed5ca7ba5e5ull

#define LINEAR_EDGES 8 /* nodes with more edges get a hash index */

/* ------------------------------------------------------------- path table */

void scan_paths_init(scan_paths *sp, size_t *acct)
{
    memset(sp, 0, sizeof(*sp));
    sp->acct = acct;
    sp->root.path = "";
    sp->next_id = 1;
}

static void node_free(scan_paths *sp, scan_node *n)
{
    mem_free(sp->acct, n->edges, n->cap_edges * sizeof(scan_edge));
    if (n->eindex != NULL)
        mem_free(sp->acct, n->eindex, ((size_t)n->eindex_mask + 1) * sizeof(uint32_t));
    mem_free(sp->acct, n->path, (size_t)n->path_len + 1);
    mem_free(sp->acct, n, sizeof(*n));
}

void scan_paths_destroy(scan_paths *sp)
{
    for (size_t i = 0; sp->table != NULL && i <= sp->table_mask; i++)
        if (sp->table[i] != NULL)
            node_free(sp, sp->table[i]);
    if (sp->table != NULL)
        mem_free(sp->acct, sp->table, (sp->table_mask + 1) * sizeof(scan_node *));
    mem_free(sp->acct, sp->root.edges, sp->root.cap_edges * sizeof(scan_edge));
    if (sp->root.eindex != NULL)
        mem_free(sp->acct, sp->root.eindex, ((size_t)sp->root.eindex_mask + 1) * sizeof(uint32_t));
    memset(sp, 0, sizeof(*sp));
}

static scan_node *table_find(const scan_paths *sp, const char *path, size_t len, uint64_t h)
{
    if (sp->table == NULL)
        return NULL;
    for (size_t i = h & sp->table_mask;; i = (i + 1) & sp->table_mask) {
        scan_node *n = sp->table[i];
        if (n == NULL)
            return NULL;
        if (n->hash == h && n->path_len == len && memcmp(n->path, path, len) == 0)
            return n;
    }
}

static int table_resize(scan_paths *sp, size_t cap)
{
    scan_node **t = mem_calloc(sp->acct, cap * sizeof(*t));
    if (t == NULL)
        return EVBUS_ENOMEM;
    for (size_t i = 0; sp->table != NULL && i <= sp->table_mask; i++) {
        scan_node *n = sp->table[i];
        if (n == NULL)
            continue;
        size_t j = n->hash & (cap - 1);
        while (t[j] != NULL)
            j = (j + 1) & (cap - 1);
        t[j] = n;
    }
    if (sp->table != NULL)
        mem_free(sp->acct, sp->table, (sp->table_mask + 1) * sizeof(*t));
    sp->table = t;
    sp->table_mask = cap - 1;
    return 0;
}

static void table_remove(scan_paths *sp, scan_node *n)
{
    size_t mask = sp->table_mask;
    size_t i = n->hash & mask;
    while (sp->table[i] != n)
        i = (i + 1) & mask;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        scan_node *m = sp->table[j];
        if (m == NULL)
            break;
        size_t home = m->hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            sp->table[i] = m;
            i = j;
        }
    }
    sp->table[i] = NULL;
    sp->count--;
    if (sp->count == 0) {
        mem_free(sp->acct, sp->table, (mask + 1) * sizeof(scan_node *));
        sp->table = NULL;
        sp->table_mask = 0;
    } else if (mask + 1 > 16 && sp->count * 8 < mask + 1) {
        (void)table_resize(sp, (mask + 1) / 2); /* failing to shrink is harmless */
    }
}

static uint64_t edge_hash(const char *key, size_t len)
{
    return mem_hash(key, len, EDGE_SEED);
}

static void eindex_put(scan_node *n, uint32_t e)
{
    const scan_edge *ed = &n->edges[e];
    uint32_t i = (uint32_t)edge_hash(ed->key, ed->len) & n->eindex_mask;
    while (n->eindex[i] != 0)
        i = (i + 1) & n->eindex_mask;
    n->eindex[i] = e + 1;
}

/* (Re)builds the edge index of n after it grew past LINEAR_EDGES or lost an edge. */
static int eindex_build(scan_paths *sp, scan_node *n)
{
    size_t old = n->eindex != NULL ? (size_t)n->eindex_mask + 1 : 0;
    if (n->nedges <= LINEAR_EDGES) {
        if (n->eindex != NULL)
            mem_free(sp->acct, n->eindex, old * sizeof(uint32_t));
        n->eindex = NULL;
        n->eindex_mask = 0;
        return 0;
    }
    size_t cap = 16;
    while (cap < (size_t)n->nedges * 2)
        cap *= 2;
    uint32_t *ix = mem_calloc(sp->acct, cap * sizeof(uint32_t));
    if (ix == NULL)
        return EVBUS_ENOMEM;
    if (n->eindex != NULL)
        mem_free(sp->acct, n->eindex, old * sizeof(uint32_t));
    n->eindex = ix;
    n->eindex_mask = (uint32_t)(cap - 1);
    for (uint32_t e = 0; e < n->nedges; e++)
        eindex_put(n, e);
    return 0;
}

static int edge_add(scan_paths *sp, scan_node *from, scan_node *to)
{
    if (from->nedges == from->cap_edges) {
        uint32_t cap = from->cap_edges ? from->cap_edges * 2 : 2;
        scan_edge *e = mem_realloc(sp->acct, from->edges, from->cap_edges * sizeof(scan_edge),
                                   cap * sizeof(scan_edge));
        if (e == NULL)
            return EVBUS_ENOMEM;
        from->edges = e;
        from->cap_edges = cap;
    }
    size_t skip = from == &sp->root ? 0 : (size_t)from->path_len + 1;
    scan_edge *e = &from->edges[from->nedges++];
    e->key = to->path + skip;
    e->len = (uint32_t)(to->path_len - skip);
    e->child = to;
    if (from->nedges > LINEAR_EDGES) {
        size_t need = (size_t)from->nedges * 2;
        if (from->eindex == NULL || need > (size_t)from->eindex_mask + 1) {
            if (eindex_build(sp, from) != 0) {
                from->nedges--;
                return EVBUS_ENOMEM;
            }
        } else {
            eindex_put(from, from->nedges - 1);
        }
    }
    return 0;
}

static void edge_remove(scan_paths *sp, scan_node *from, const scan_node *to)
{
    for (uint32_t e = 0; e < from->nedges; e++) {
        if (from->edges[e].child != to)
            continue;
        from->edges[e] = from->edges[--from->nedges];
        break;
    }
    if (from->nedges == 0) {
        mem_free(sp->acct, from->edges, from->cap_edges * sizeof(scan_edge));
        from->edges = NULL;
        from->cap_edges = 0;
    } else if (from->nedges * 4 <= from->cap_edges && from->cap_edges > 2) {
        uint32_t cap = from->cap_edges / 2;
        scan_edge *e = mem_realloc(sp->acct, from->edges, from->cap_edges * sizeof(scan_edge),
                                   cap * sizeof(scan_edge));
        if (e != NULL) {
            from->edges = e;
            from->cap_edges = cap;
        }
    }
    if (from->eindex != NULL && eindex_build(sp, from) != 0) {
        /* Could not rebuild smaller: a stale index would be wrong, so drop to linear search
         * by rebuilding in place at the current size (no allocation). */
        memset(from->eindex, 0, ((size_t)from->eindex_mask + 1) * sizeof(uint32_t));
        for (uint32_t e = 0; e < from->nedges; e++)
            eindex_put(from, e);
    }
}

/* The node of prefix path[0..len), or NULL. (The root is not in the table: the prefix ""
 * of a path that starts with '.' is the node of the empty key, reached from the root.) */
static scan_node *prefix_node(scan_paths *sp, const char *path, size_t len)
{
    return table_find(sp, path, len, mem_hash(path, len, PATHS_SEED));
}

static void node_unlink(scan_paths *sp, scan_node *n)
{
    /* Remove the edges into n: from the root and from every shorter split prefix (some may be
     * gone already when a release frees shorter prefixes first). */
    edge_remove(sp, &sp->root, n);
    for (size_t i = 0; i < n->path_len; i++) {
        if (n->path[i] != '.')
            continue;
        scan_node *from = prefix_node(sp, n->path, i);
        if (from != NULL)
            edge_remove(sp, from, n);
    }
    table_remove(sp, n);
    node_free(sp, n);
}

/* Creates the node of path[0..len) with its incoming edges (shorter prefixes exist). */
static scan_node *node_create(scan_paths *sp, const char *path, size_t len, uint64_t h)
{
    if (len >= UINT32_MAX)
        return NULL;
    if (sp->table == NULL || (sp->count + 1) * 2 > sp->table_mask + 1) {
        size_t cap = sp->table == NULL ? 16 : (sp->table_mask + 1) * 2;
        if (table_resize(sp, cap) != 0)
            return NULL;
    }
    scan_node *n = mem_calloc(sp->acct, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->path = mem_alloc(sp->acct, len + 1);
    if (n->path == NULL) {
        mem_free(sp->acct, n, sizeof(*n));
        return NULL;
    }
    memcpy(n->path, path, len);
    n->path[len] = '\0';
    n->path_len = (uint32_t)len;
    n->hash = h;
    n->id = sp->next_id++;
    size_t i = h & sp->table_mask;
    while (sp->table[i] != NULL)
        i = (i + 1) & sp->table_mask;
    sp->table[i] = n;
    sp->count++;
    if (edge_add(sp, &sp->root, n) != 0)
        goto fail;
    for (size_t k = 0; k < len; k++) {
        if (path[k] != '.')
            continue;
        scan_node *from = prefix_node(sp, path, k);
        if (from == NULL || edge_add(sp, from, n) != 0)
            goto fail;
    }
    return n;
fail:
    node_unlink(sp, n);
    return NULL;
}

/* Drops one reference on each prefix node of path[0..len) ending at a split point <= upto,
 * shortest first (a shorter prefix never has fewer references than a longer one). */
static void unref_prefixes(scan_paths *sp, const char *path, size_t len, size_t upto)
{
    for (size_t k = 0; k <= upto && k <= len; k++) {
        if (k < len && path[k] != '.')
            continue;
        scan_node *m = prefix_node(sp, path, k);
        if (m != NULL && --m->refs == 0)
            node_unlink(sp, m);
    }
}

scan_node *scan_paths_acquire(scan_paths *sp, const char *path, size_t len)
{
    /* Split points: every '.' and the end; one node per prefix ending there. */
    scan_node *n = NULL;
    for (size_t k = 0; k <= len; k++) {
        if (k < len && path[k] != '.')
            continue;
        uint64_t h = mem_hash(path, k, PATHS_SEED);
        n = table_find(sp, path, k, h);
        if (n == NULL && (n = node_create(sp, path, k, h)) == NULL) {
            if (k > 0)
                unref_prefixes(sp, path, len, k - 1);
            return NULL;
        }
        n->refs++;
    }
    return n;
}

scan_node *scan_paths_find(const scan_paths *sp, const char *path, size_t len)
{
    return table_find(sp, path, len, mem_hash(path, len, PATHS_SEED));
}

void scan_paths_release(scan_paths *sp, scan_node *node)
{
    /* Shortest first: node->path (the longest) stays valid until its own node goes last. */
    size_t len = node->path_len;
    if (len > 0)
        unref_prefixes(sp, node->path, len, len - 1);
    if (--node->refs == 0)
        node_unlink(sp, node);
}

/* ------------------------------------------------------------------ scanner */

void scan_init(scan *s, size_t *acct)
{
    memset(s, 0, sizeof(*s));
    s->acct = acct;
}

void scan_destroy(scan *s)
{
    mem_free(s->acct, s->ctx, s->cap_ctx * sizeof(scan_ctx_rec));
    mem_free(s->acct, s->levels, s->cap_levels * sizeof(struct scan_level));
    mem_free(s->acct, s->frames, s->cap_frames * sizeof(struct scan_frame));
    mem_free(s->acct, s->buf, s->cap_buf);
    size_t *acct = s->acct;
    memset(s, 0, sizeof(*s));
    s->acct = acct;
}

void scan_trim(scan *s, size_t keep)
{
    if (s->cap_ctx * sizeof(scan_ctx_rec) > keep) {
        mem_free(s->acct, s->ctx, s->cap_ctx * sizeof(scan_ctx_rec));
        s->ctx = NULL;
        s->cap_ctx = 0;
    }
    if (s->cap_levels * sizeof(struct scan_level) > keep) {
        mem_free(s->acct, s->levels, s->cap_levels * sizeof(struct scan_level));
        s->levels = NULL;
        s->cap_levels = 0;
    }
    if (s->cap_frames * sizeof(struct scan_frame) > keep) {
        mem_free(s->acct, s->frames, s->cap_frames * sizeof(struct scan_frame));
        s->frames = NULL;
        s->cap_frames = 0;
    }
    if (s->cap_buf > keep) {
        mem_free(s->acct, s->buf, s->cap_buf);
        s->buf = NULL;
        s->cap_buf = 0;
    }
}

static int grow(size_t *acct, void **p, uint32_t *cap, size_t elem, uint32_t need)
{
    if (need <= *cap)
        return 0;
    uint32_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = mem_realloc(acct, *p, (size_t)*cap * elem, (size_t)c * elem);
    if (q == NULL)
        return EVBUS_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

uint32_t scan_leaf_ctx(scan *s)
{
    uint32_t n = s->nlevels;
    if (n == 0)
        return 0;
    if (s->levels[n - 1].ctx != 0)
        return s->levels[n - 1].ctx;
    /* Invariant 3: find the deepest level with a context, then create the rest outward-in. */
    uint32_t i = n - 1;
    while (i > 0 && s->levels[i - 1].ctx == 0)
        i--;
    if (s->nctx == 0)
        s->nctx = 1; /* id 0 is "no array" */
    if (grow(s->acct, (void **)&s->ctx, &s->cap_ctx, sizeof(scan_ctx_rec), s->nctx + (n - i)) != 0)
        return UINT32_MAX;
    for (; i < n; i++) {
        scan_ctx_rec *r = &s->ctx[s->nctx];
        r->parent = i == 0 ? 0 : s->levels[i - 1].ctx;
        r->array = s->levels[i].array;
        r->index = s->levels[i].index;
        r->depth = i + 1;
        s->levels[i].ctx = s->nctx++;
    }
    return s->levels[n - 1].ctx;
}

int scan_consistent(const scan *s, uint32_t a, uint32_t b)
{
    if (a == 0 || b == 0 || a == b)
        return 1;
    const scan_ctx_rec *c = s->ctx;
    while (c[a].depth > c[b].depth)
        a = c[a].parent;
    while (c[b].depth > c[a].depth)
        b = c[b].parent;
    if (a == b)
        return 1; /* one encloses the other */
    while (c[a].parent != c[b].parent) {
        a = c[a].parent;
        b = c[b].parent;
    }
    /* Siblings under one context: elements of one array (different indexes), or of two arrays. */
    return c[a].array != c[b].array;
}

/* ------------------------------------------------------------ JSON grammar */

/*
 * The grammar helpers take the current position and return the position after what they
 * consumed, or NULL after recording why in w->err: the hot loops keep the position in a
 * register instead of in the walk struct.
 */
struct walk {
    scan *s;
    const char *end;
    const char *err;
    const char *err_at;
    uint32_t depth;
};

__attribute__((noinline, cold)) static const char *fail_at(struct walk *w, const char *at,
                                                           const char *what)
{
    w->err = what;
    w->err_at = at;
    return NULL;
}

static inline const char *ws(const char *p, const char *end)
{
    /* Compact JSON: the next byte is almost never white space. */
    if (p < end && (unsigned char)*p > ' ')
        return p;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static inline int is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int read_u4(const char *p, const char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return 0;
}

/* Validates one UTF-8 sequence starting at p (first byte >= 0x80); returns its length or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    uint32_t v;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    return n;
}

/* Validates an escape at p ('\\'); returns its length or 0. */
static size_t escape_len(const char *p, const char *end)
{
    if (end - p < 2)
        return 0;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't': return 2;
    case 'u': break;
    default: return 0;
    }
    uint32_t u;
    if (read_u4(p + 2, end, &u) != 0)
        return 0;
    if (u == 0)
        return 7; /* "\u0000": valid, but 6 bytes long; 7 tells the caller it is a NUL */
    if (u >= 0xdc00 && u <= 0xdfff)
        return 0; /* a low surrogate alone */
    if (u < 0xd800 || u > 0xdbff)
        return 6;
    uint32_t lo;
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || read_u4(p + 8, end, &lo) != 0 ||
        lo < 0xdc00 || lo > 0xdfff)
        return 0;
    return 12;
}

/* The rare and slow parts of a string: escapes, control bytes, UTF-8. */
__attribute__((noinline)) static const char *str_special(struct walk *w, const char *p, int *esc)
{
    unsigned char c = (unsigned char)*p;
    if (c == '\\') {
        size_t n = escape_len(p, w->end);
        if (n == 0)
            return fail_at(w, p, "invalid escape in string");
        if (n == 7) {
            *esc |= 2;
            n = 6;
        }
        *esc |= 1;
        return p + n;
    }
    if (c < 0x20)
        return fail_at(w, p, "control character in string");
    size_t n = utf8_seq((const unsigned char *)p, (const unsigned char *)w->end);
    if (n == 0)
        return fail_at(w, p, "invalid UTF-8 in string");
    return p + n;
}

/*
 * String body at p (just after the opening quote). Returns the position after the closing
 * quote; *esc gets bit 1 when a backslash occurs and bit 2 when an escaped NUL (\u0000) does
 * (jansson refuses those in keys).
 */
__attribute__((always_inline)) static inline const char *str_end(struct walk *w, const char *p,
                                                                 int *esc)
{
    const char *end = w->end;
    for (;;) {
#if defined(__SSE2__)
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i special = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                             _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                _mm_cmplt_epi8(v, _mm_set1_epi8(0x20))); /* signed: also bytes >= 0x80 */
            unsigned mask = (unsigned)_mm_movemask_epi8(special);
            if (mask == 0) {
                p += 16;
                continue;
            }
            p += __builtin_ctz(mask);
            goto special;
        }
#endif
        while (p < end) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
                goto special;
            p++;
        }
        return fail_at(w, p, "unterminated string");
    special:
        if (*p == '"')
            return p + 1;
        if ((p = str_special(w, p, esc)) == NULL)
            return NULL;
    }
}

/* 1 when the number text (validated) overflows a double, as jansson (which then refuses the
 * event) sees it. */
static int number_overflows(const char *s, size_t len)
{
    char small[64];
    char *buf = len < sizeof(small) ? small : malloc(len + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    double d = strtod(buf, NULL);
    int over = errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL);
    if (buf != small)
        free(buf);
    return over;
}

/* Number of ASCII digits starting at p (coordinates have runs of 14 to 17). */
__attribute__((always_inline)) static inline size_t digit_run(const char *p, const char *end)
{
    const char *q = p;
#if defined(__SSE2__)
    while (end - q >= 16) {
        __m128i t =
            _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(const void *)q), _mm_set1_epi8('0'));
        /* t > 9 (unsigned) <=> max(t, 10) == t: a byte that is not a digit */
        unsigned mask =
            (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(t, _mm_set1_epi8(10)), t));
        if (mask != 0)
            return (size_t)(q - p) + (size_t)__builtin_ctz(mask);
        q += 16;
    }
#endif
    while (q < end && is_digit(*q))
        q++;
    return (size_t)(q - p);
}

/* The exponent of a number, and the overflow check jansson makes (it refuses such events). */
__attribute__((noinline, cold)) static const char *num_exp(struct walk *w, const char *start,
                                                           const char *p, long magnitude)
{
    const char *end = w->end;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int neg = 0;
        if (p < end && (*p == '+' || *p == '-'))
            neg = *p++ == '-';
        if (p >= end || !is_digit(*p))
            return fail_at(w, p, "invalid number");
        long e = 0;
        while (p < end && is_digit(*p)) {
            if (e < 100000)
                e = e * 10 + (*p - '0');
            p++;
        }
        magnitude += neg ? -e : e;
    }
    /* Below 10^308 nothing overflows; only then is strtod worth asking. */
    if (magnitude > 308 && number_overflows(start, (size_t)(p - start)))
        return fail_at(w, start, "number out of range");
    return p;
}

#if defined(__SSE2__)
/* Bit i set when q[i] is not an ASCII digit, for i in 0..31 (q + 32 <= end). */
static inline uint32_t nondigits32(const char *q)
{
    const __m128i zero = _mm_set1_epi8('0'), ten = _mm_set1_epi8(10);
    __m128i a = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(const void *)q), zero);
    __m128i b = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(const void *)(q + 16)), zero);
    uint32_t ma = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(a, ten), a));
    uint32_t mb = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(b, ten), b));
    return ma | mb << 16;
}
#endif

/* Number at p (starts with '-' or a digit). */
__attribute__((always_inline)) static inline const char *num_end(struct walk *w, const char *p)
{
    const char *start = p;
    const char *end = w->end;
    if (*p == '-' && ++p >= end)
        return fail_at(w, p, "invalid number");
#if defined(__SSE2__)
    /* Fast path: the integer and fraction digits of a coordinate fit in one 32-byte window. */
    if (end - p >= 32) {
        uint32_t nd = nondigits32(p);
        uint32_t k = (uint32_t)__builtin_ctz(nd | 0x80000000u);
        if (k == 0 || (k > 1 && *p == '0') || k == 31)
            goto slow; /* no digit, a leading zero (an error) or a long run: the careful way */
        const char *q = p + k;
        if (*q == '.') {
            uint32_t rest = nd >> (k + 1); /* k <= 30 */
            uint32_t f = rest ? (uint32_t)__builtin_ctz(rest) : 32;
            if (f == 0 || k + 1 + f >= 32)
                goto slow;
            q += 1 + f;
        }
        if (*q == 'e' || *q == 'E')
            return num_exp(w, start, q, (long)k);
        return q;
    }
slow :
#endif
{
    long magnitude; /* decimal digits before the point */
    if (*p == '0') {
        p++;
        magnitude = 1;
    } else {
        size_t k = digit_run(p, end);
        if (k == 0)
            return fail_at(w, p, "invalid number");
        p += k;
        magnitude = (long)k;
    }
    if (p < end && *p == '.') {
        p++;
        size_t k = digit_run(p, end);
        if (k == 0)
            return fail_at(w, p, "invalid number");
        p += k;
    }
    if ((p < end && (*p == 'e' || *p == 'E')) || magnitude > 308)
        return num_exp(w, start, p, magnitude);
    return p;
}
}

/* true, false or null at p. */
static const char *lit_end(struct walk *w, const char *p)
{
    size_t left = (size_t)(w->end - p);
    switch (*p) {
    case 't':
        if (left >= 4 && memcmp(p, "true", 4) == 0)
            return p + 4;
        break;
    case 'f':
        if (left >= 5 && memcmp(p, "false", 5) == 0)
            return p + 5;
        break;
    case 'n':
        if (left >= 4 && memcmp(p, "null", 4) == 0)
            return p + 4;
        break;
    default: return fail_at(w, p, "unexpected character");
    }
    return fail_at(w, p, "invalid literal");
}

#if defined(__SSE2__)
/* Character classes of a 64-byte window, one bit per byte. */
struct cls64 {
    uint64_t d, z, m, pt, c, o, x;
};

/* Bits set in x; without -mpopcnt, GCC's builtin is a library call. */
static inline uint32_t popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (uint32_t)((x * 0x0101010101010101ull) >> 56);
}

static inline uint64_t movemask64(__m128i v, int shift)
{
    return (uint64_t)(uint32_t)_mm_movemask_epi8(v) << shift;
}

static inline void classify16(const char *q, int shift, struct cls64 *k)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
    __m128i t = _mm_sub_epi8(v, _mm_set1_epi8('0'));
    k->d |= movemask64(_mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(9)), t), shift);
    k->z |= movemask64(_mm_cmpeq_epi8(v, _mm_set1_epi8('0')), shift);
    k->m |= movemask64(_mm_cmpeq_epi8(v, _mm_set1_epi8('-')), shift);
    k->pt |= movemask64(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')), shift);
    k->c |= movemask64(_mm_cmpeq_epi8(v, _mm_set1_epi8(',')), shift);
    k->o |= movemask64(_mm_cmpeq_epi8(v, _mm_set1_epi8('[')), shift);
    k->x |= movemask64(_mm_cmpeq_epi8(v, _mm_set1_epi8(']')), shift);
}

/*
 * The fast path for arrays of numbers (GeoJSON coordinates): p is at a value inside an array,
 * right after ',' or '['; every level of the bit stack from sp - arr_top up is an array.
 * Classifies the next 64 bytes (and one of look-ahead) at once and checks, with bit masks,
 * the grammar of numbers and arrays restricted to the bytes "0-9 - . , [ ]": what may precede
 * and follow each class, no leading zero, no second '.' in a number. Exponents, strings,
 * objects, literals and white space are not in that set and end the window. Commits the
 * bytes up to the last ',' that is followed by a checked byte, with the bracket depth
 * updated, and returns the position after it; returns NULL to let the byte-wise path go on
 * (nothing to commit, a grammar error to be reported precisely, or depth bounds).
 */
__attribute__((always_inline)) static inline const char *
window_commit(const struct cls64 *kk, const char *p, uint32_t *sp, uint64_t *kinds, uint32_t *depth)
{
    struct cls64 k = *kk;
    uint64_t set = k.d | k.m | k.pt | k.c | k.o | k.x;
    char n = p[64];
    uint64_t n_d = is_digit(n), n_pt = n == '.', n_c = n == ',', n_o = n == '[', n_x = n == ']',
             n_m = n == '-';
    int n_in = (int)(n_d | n_pt | n_c | n_o | n_x | n_m);
    /* Positions whose successor is a byte of the set: only those can be judged. */
    uint64_t ck;
    if (~set == 0) {
        ck = n_in ? ~0ull : ~0ull >> 1;
    } else {
        unsigned first = (unsigned)__builtin_ctzll(~set);
        ck = first <= 1 ? 0 : (1ull << (first - 1)) - 1;
    }
    uint64_t cp = k.c << 1 | (p[-1] == ','), op = k.o << 1 | (p[-1] == '['), dp = k.d << 1,
             mp = k.m << 1, xp = k.x << 1;
    uint64_t dn = k.d >> 1 | n_d << 63, pn = k.pt >> 1 | n_pt << 63, cn = k.c >> 1 | n_c << 63,
             xn = k.x >> 1 | n_x << 63, on = k.o >> 1 | n_o << 63, mn = k.m >> 1 | n_m << 63;
    uint64_t bad = (k.m & ~(cp | op)) | (k.m & ~dn) | (k.pt & ~dp) | (k.pt & ~dn) |
                   (k.d & ~(dn | pn | cn | xn)) | (k.c & ~(dp | xp)) | (k.c & ~(on | mn | dn)) |
                   (k.o & ~(op | cp)) | (k.o & ~(on | mn | dn | xn)) | (k.x & ~(dp | xp | op)) |
                   (k.x & ~(cn | xn)) | (k.z & (cp | op | mp) & dn);
    /* A digit run that starts after a '.' and ends at another '.': "1.2.3". */
    uint64_t frac = k.pt << 1 & k.d;
    bad |= (k.d + frac) & ~k.d & k.pt;
    if ((bad & ck) != 0)
        return NULL;
    uint64_t commas = k.c & ck;
    if (commas == 0)
        return NULL;
    unsigned last = 63u - (unsigned)__builtin_clzll(commas);
    uint64_t upto = last == 63 ? ~0ull : (2ull << last) - 1;
    uint32_t opens = popcount64(k.o & upto);
    uint32_t closes = popcount64(k.x & upto);
    uint32_t arr_top = 0;
    for (uint32_t i = *sp; i > 0 && arr_top <= closes; i--, arr_top++)
        if ((kinds[(i - 1) >> 6] >> ((i - 1) & 63)) & 1)
            break;
    if (closes >= arr_top || *depth + opens > SCAN_MAX_DEPTH)
        return NULL;
    uint32_t nsp = *sp + opens - closes;
    for (uint32_t i = *sp; i < nsp; i++)
        kinds[i >> 6] &= ~(1ull << (i & 63));
    *sp = nsp;
    *depth += opens - closes;
    return p + last + 1;
}

static const char *window_sse2(const char *p, uint32_t *sp, uint64_t *kinds, uint32_t *depth)
{
    struct cls64 k = {0, 0, 0, 0, 0, 0, 0};
    classify16(p, 0, &k);
    classify16(p + 16, 16, &k);
    classify16(p + 32, 32, &k);
    classify16(p + 48, 48, &k);
    return window_commit(&k, p, sp, kinds, depth);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx2"))) static inline uint64_t movemask32(__m256i v, int shift)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(v) << shift;
}

/* The same classes, 32 bytes per instruction. */
__attribute__((target("avx2"))) static const char *window_avx2(const char *p, uint32_t *sp,
                                                               uint64_t *kinds, uint32_t *depth)
{
    struct cls64 k = {0, 0, 0, 0, 0, 0, 0};
    for (int h = 0; h < 64; h += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + h));
        __m256i t = _mm256_sub_epi8(v, _mm256_set1_epi8('0'));
        k.d |= movemask32(_mm256_cmpeq_epi8(_mm256_min_epu8(t, _mm256_set1_epi8(9)), t), h);
        k.z |= movemask32(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('0')), h);
        k.m |= movemask32(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('-')), h);
        k.pt |= movemask32(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('.')), h);
        k.c |= movemask32(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(',')), h);
        k.o |= movemask32(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('[')), h);
        k.x |= movemask32(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(']')), h);
    }
    return window_commit(&k, p, sp, kinds, depth);
}

/* The CPU check is one load of libgcc's cpu model (filled in before main): no state of ours. */
static inline const char *number_array_window(const char *p, uint32_t *sp, uint64_t *kinds,
                                              uint32_t *depth)
{
    if (__builtin_cpu_supports("avx2"))
        return window_avx2(p, sp, kinds, depth);
    return window_sse2(p, sp, kinds, depth);
}
#else
#define number_array_window window_sse2
#endif
#endif

/*
 * Skips (and validates) the value at p. Containers are walked with a bit stack of object/array
 * kinds, bounded by SCAN_MAX_DEPTH like the rest of the walk; the kind of the innermost
 * container is kept in `obj` so the hot path (numbers in coordinate arrays) touches no stack.
 */
static const char *skip_value(struct walk *w, const char *p)
{
    const char *end = w->end;
    int esc = 0;
    char c = *p;
    if (c == '"')
        return str_end(w, p + 1, &esc);
    if (c == '-' || is_digit(c))
        return num_end(w, p);
    if (c != '{' && c != '[')
        return lit_end(w, p);
    uint64_t kinds[SCAN_MAX_DEPTH / 64 + 1]; /* bit set: object */
    uint32_t sp = 0;
    int obj;
open:
    if (++w->depth > SCAN_MAX_DEPTH)
        return fail_at(w, p, "nesting too deep");
    obj = c == '{';
    if (obj)
        kinds[sp >> 6] |= 1ull << (sp & 63);
    else
        kinds[sp >> 6] &= ~(1ull << (sp & 63));
    sp++;
    p = ws(p + 1, end);
    if (p >= end)
        return fail_at(w, p, "unexpected end");
    if (obj) {
        if (*p == '}') {
            p++;
            goto close;
        }
        goto key;
    }
    if (*p == ']') {
        p++;
        goto close;
    }
    goto value;
key:
    if (*p != '"')
        return fail_at(w, p, "expected a key");
    esc = 0;
    if ((p = str_end(w, p + 1, &esc)) == NULL)
        return NULL;
    if (esc & 2)
        return fail_at(w, p, "NUL byte in object key");
    p = ws(p, end);
    if (p >= end || *p != ':')
        return fail_at(w, p, "expected ':'");
    p = ws(p + 1, end);
    if (p >= end)
        return fail_at(w, p, "unexpected end");
value:
    c = *p;
#if defined(__SSE2__)
    if (!obj && end - p > 64 && (c == '-' || is_digit(c) || c == '[') &&
        (p[-1] == ',' || p[-1] == '[')) {
        const char *q = number_array_window(p, &sp, kinds, &w->depth);
        if (q != NULL) {
            p = q;
            goto value;
        }
    }
#endif
    if (c == '-' || is_digit(c)) {
        p = num_end(w, p);
    } else if (c == '"') {
        p = str_end(w, p + 1, &esc);
    } else if (c == '{' || c == '[') {
        goto open;
    } else {
        p = lit_end(w, p);
    }
    if (p == NULL)
        return NULL;
after:
    p = ws(p, end);
    if (p >= end)
        return fail_at(w, p, "unexpected end");
    c = *p;
    if (c == ',') {
        p = ws(p + 1, end);
        if (p >= end)
            return fail_at(w, p, "unexpected end");
        if (obj)
            goto key;
        goto value;
    }
    if (c != (obj ? '}' : ']'))
        return fail_at(w, p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    p++;
close:
    w->depth--;
    if (--sp == 0)
        return p;
    obj = (int)((kinds[(sp - 1) >> 6] >> ((sp - 1) & 63)) & 1);
    goto after;
}

/* Finds the edge of n labelled key[0..len), or NULL. */
static inline const scan_node *find_child(const scan_node *n, const char *key, size_t len)
{
    if (n->eindex == NULL) {
        for (uint32_t e = 0; e < n->nedges; e++) {
            const scan_edge *ed = &n->edges[e];
            if (ed->len == len && memcmp(ed->key, key, len) == 0)
                return ed->child;
        }
        return NULL;
    }
    uint32_t i = (uint32_t)edge_hash(key, len) & n->eindex_mask;
    for (;; i = (i + 1) & n->eindex_mask) {
        uint32_t slot = n->eindex[i];
        if (slot == 0)
            return NULL;
        const scan_edge *ed = &n->edges[slot - 1];
        if (ed->len == len && memcmp(ed->key, key, len) == 0)
            return ed->child;
    }
}

size_t scan_unescape(const char *raw, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char c = raw[i];
        if (c != '\\') {
            out[o++] = c;
            i++;
            continue;
        }
        char e = raw[i + 1];
        i += 2;
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t u = 0, lo = 0;
            (void)read_u4(raw + i, raw + len, &u);
            i += 4;
            if (u >= 0xd800 && u <= 0xdbff) {
                (void)read_u4(raw + i + 2, raw + len, &lo);
                i += 6;
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (u < 0x80) {
                out[o++] = (char)u;
            } else if (u < 0x800) {
                out[o++] = (char)(0xc0 | (u >> 6));
                out[o++] = (char)(0x80 | (u & 0x3f));
            } else if (u < 0x10000) {
                out[o++] = (char)(0xe0 | (u >> 12));
                out[o++] = (char)(0x80 | ((u >> 6) & 0x3f));
                out[o++] = (char)(0x80 | (u & 0x3f));
            } else {
                out[o++] = (char)(0xf0 | (u >> 18));
                out[o++] = (char)(0x80 | ((u >> 12) & 0x3f));
                out[o++] = (char)(0x80 | ((u >> 6) & 0x3f));
                out[o++] = (char)(0x80 | (u & 0x3f));
            }
            break;
        }
        default: out[o++] = e; break; /* '"', '\\', '/' */
        }
    }
    return o;
}

/* ----------------------------------------------------------------- walker */

static int push_frame(struct walk *w, uint32_t at, const scan_node *n, uint32_t is_obj)
{
    scan *s = w->s;
    if (at >= s->cap_frames &&
        grow(s->acct, (void **)&s->frames, &s->cap_frames, sizeof(struct scan_frame), at + 1) != 0)
        return -1;
    s->frames[at].node = n;
    s->frames[at].is_object = is_obj;
    return 0;
}

static int push_level(struct walk *w)
{
    scan *s = w->s;
    if (s->nlevels >= s->cap_levels && grow(s->acct, (void **)&s->levels, &s->cap_levels,
                                            sizeof(struct scan_level), s->nlevels + 1) != 0)
        return -1;
    struct scan_level *l = &s->levels[s->nlevels++];
    l->array = ++s->next_array;
    l->index = 0;
    l->ctx = 0;
    return 0;
}

int scan_event(scan *s, const scan_paths *sp, const char *text, size_t len, scan_leaf_fn fn,
               void *ud, char *err, size_t err_len)
{
    struct walk w = {.s = s, .end = text + len, .err = NULL, .err_at = text, .depth = 0};
    const char *end = w.end;
    const char *p = text;
    s->nctx = 0;
    s->nlevels = 0;
    s->next_array = 0;
    uint32_t nf = 0; /* frames in use */
    const scan_node *node;
    scan_value v;
    int esc;
    char c;
    int oom = 0;

    p = ws(p, end);
    if (p >= end || *p != '{') {
        fail_at(&w, p, "event is not a JSON object");
        goto error;
    }
    node = &sp->root;

open_object: /* p at '{' of an object walked with `node` */
    if (++w.depth > SCAN_MAX_DEPTH) {
        fail_at(&w, p, "nesting too deep");
        goto error;
    }
    if (push_frame(&w, nf, node, 1) != 0) {
        oom = 1;
        goto error;
    }
    nf++;
    p = ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
        goto close;
    }
key:
    if (p >= end || *p != '"') {
        fail_at(&w, p, "expected a key");
        goto error;
    }
    {
        const char *k = p + 1;
        esc = 0;
        if ((p = str_end(&w, k, &esc)) == NULL)
            goto error;
        size_t klen = (size_t)(p - 1 - k);
        const scan_node *parent = s->frames[nf - 1].node;
        if (esc & 2) {
            fail_at(&w, k, "NUL byte in object key");
            goto error;
        }
        if (esc) {
            if (klen > s->cap_buf) {
                char *b = mem_realloc(s->acct, s->buf, s->cap_buf, klen);
                if (b == NULL) {
                    oom = 1;
                    goto error;
                }
                s->buf = b;
                s->cap_buf = klen;
            }
            node = find_child(parent, s->buf, scan_unescape(k, klen, s->buf));
        } else {
            node = find_child(parent, k, klen);
        }
    }
    p = ws(p, end);
    if (p >= end || *p != ':') {
        fail_at(&w, p, "expected ':'");
        goto error;
    }
    p = ws(p + 1, end);
    if (p >= end) {
        fail_at(&w, p, "unexpected end");
        goto error;
    }
value: /* p at a value of field `node` (NULL: no rule names it) */
    if (node == NULL) {
        if ((p = skip_value(&w, p)) == NULL)
            goto error;
        goto after;
    }
    c = *p;
    switch (c) {
    case '{':
        if (node->nedges == 0) {
            if ((p = skip_value(&w, p)) == NULL)
                goto error;
            goto after;
        }
        goto open_object;
    case '[':
        if (++w.depth > SCAN_MAX_DEPTH) {
            fail_at(&w, p, "nesting too deep");
            goto error;
        }
        if (push_frame(&w, nf, node, 0) != 0 || push_level(&w) != 0) {
            oom = 1;
            goto error;
        }
        nf++;
        p = ws(p + 1, end);
        if (p >= end) {
            fail_at(&w, p, "unexpected end");
            goto error;
        }
        if (*p == ']') {
            p++;
            goto close;
        }
        goto value;
    case '"':
        v.s = p + 1;
        esc = 0;
        if ((p = str_end(&w, v.s, &esc)) == NULL)
            goto error;
        if (node->leaf != NULL) {
            v.type = SCAN_STRING;
            v.len = (size_t)(p - 1 - v.s);
            v.escaped = esc & 1;
            fn(ud, s, node, &v);
        }
        goto after;
    case 't':
    case 'f':
    case 'n':
        if ((p = lit_end(&w, p)) == NULL)
            goto error;
        if (node->leaf != NULL) {
            v.type = c == 't' ? SCAN_TRUE : c == 'f' ? SCAN_FALSE : SCAN_NULL;
            v.s = NULL;
            v.len = 0;
            v.escaped = 0;
            fn(ud, s, node, &v);
        }
        goto after;
    default:
        v.s = p;
        if (c != '-' && !is_digit(c)) {
            fail_at(&w, p, "unexpected character");
            goto error;
        }
        if ((p = num_end(&w, p)) == NULL)
            goto error;
        if (node->leaf != NULL) {
            v.type = SCAN_NUMBER;
            v.len = (size_t)(p - v.s);
            v.escaped = 0;
            fn(ud, s, node, &v);
        }
        goto after;
    }
after: /* a value inside frame nf-1 is done */
    p = ws(p, end);
    if (p >= end) {
        fail_at(&w, p, "unexpected end");
        goto error;
    }
    c = *p;
    if (s->frames[nf - 1].is_object) {
        if (c == ',') {
            p = ws(p + 1, end);
            goto key;
        }
        if (c != '}') {
            fail_at(&w, p, "expected ',' or '}'");
            goto error;
        }
    } else {
        if (c == ',') {
            struct scan_level *l = &s->levels[s->nlevels - 1];
            l->index++;
            l->ctx = 0;
            p = ws(p + 1, end);
            if (p >= end) {
                fail_at(&w, p, "unexpected end");
                goto error;
            }
            node = s->frames[nf - 1].node;
            goto value;
        }
        if (c != ']') {
            fail_at(&w, p, "expected ',' or ']'");
            goto error;
        }
    }
    p++;
close: /* the container of frame nf-1 has just been closed */
    w.depth--;
    if (!s->frames[nf - 1].is_object)
        s->nlevels--;
    if (--nf > 0)
        goto after;
    p = ws(p, end);
    if (p != end) {
        fail_at(&w, p, "trailing characters after the event");
        goto error;
    }
    return 0;

error:
    s->nlevels = 0;
    if (oom) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "out of memory while scanning the event");
        return EVBUS_ENOMEM;
    }
    if (err != NULL && err_len > 0)
        snprintf(err, err_len, "invalid event at byte %zu: %s", (size_t)(w.err_at - text),
                 w.err != NULL ? w.err : "malformed");
    return EVBUS_EINVAL;
}
