/*
 * rules/scan: the event scanner of the compiled matcher, and the table of
 * field paths it is driven by.
 *
 * scan_paths holds every dotted field path some rule names, as a graph of
 * nodes: one node per dotted prefix of a registered path that ends at a '.' or
 * at the end ("a", "a.b", "a.b.c" for "a.b.c"). An edge leads from a node to a
 * longer prefix, labelled with the text between them; there is an edge for
 * every pair of split points, so an event key that itself contains dots still
 * lands on the right node (event {"a":{"b.c":1}} and {"a.b":{"c":1}} both reach
 * "a.b.c", as the leaf-path model of pattern.h says). Nodes and edges are
 * reference-counted by the paths registered through them; releasing the last
 * path frees them, so the table returns to its empty size.
 *
 * scan_event walks the JSON text of one event once, without building a tree:
 * at each object it looks every key up among the current node's edges and
 * skips the values of keys no path names. Arrays are walked with the node of
 * the field that holds them (elements inherit the array's path). Every leaf
 * (string, number, true, false, null) at a node that carries user data
 * (scan_node.leaf) is reported to the callback. The whole text is validated
 * (RFC 8259 grammar, UTF-8, escapes, nesting depth), including skipped parts,
 * so an event is either a JSON object or EVBUS_EINVAL.
 *
 * Array membership: each array the walk enters (only arrays under named
 * paths are entered, others are skipped) gets an id; the callback may ask for
 * the context of the current leaf (scan_leaf_ctx), a small id naming the
 * chain of (array, element index) that encloses it; contexts are created on
 * demand only, so leaves outside arrays, or callers that never ask, cost
 * nothing. scan_consistent() answers whether two contexts are
 * array-consistent (no array in common at different indexes).
 *
 * Invariants:
 *  1. Node refs = number of registered paths with this node as a prefix
 *     (including itself). A node with refs 0 is freed with the edges into it.
 *  2. Context ids are valid until the next scan_event on the same scanner;
 *     context 0 is "under no array"; a context's parent has a smaller id.
 *  3. For the array stack of the scanner, if level i has a context then every
 *     level below i has one too (contexts are created outermost first, and a
 *     level's context is dropped when its element index advances).
 */
#ifndef EVBUS_RULES_SCAN_H
#define EVBUS_RULES_SCAN_H

#include <stddef.h>
#include <stdint.h>

/* JSON nesting limit, the same as jansson's JSON_PARSER_MAX_DEPTH. */
#define SCAN_MAX_DEPTH 2048

typedef struct scan_node scan_node;

/* An edge exists exactly as long as its child: every path through the child passes the parent. */
typedef struct scan_edge {
    const char *key; /* points into child->path */
    uint32_t len;
    scan_node *child;
} scan_edge;

struct scan_node {
    scan_edge *edges;
    uint32_t nedges;
    uint32_t cap_edges;
    uint32_t *eindex; /* open-addressing index over edges (slot = edge + 1), when large */
    uint32_t eindex_mask;
    uint32_t refs;
    void *leaf; /* the owner's data for conditions at exactly this path; NULL: none */
    char *path; /* dotted prefix, NUL-terminated; "" for the root */
    uint32_t path_len;
    uint32_t id; /* stable while the node lives; the root is 0 */
    uint64_t hash;
};

typedef struct scan_paths {
    scan_node root;
    scan_node **table; /* every non-root node by path, open addressing */
    size_t table_mask; /* capacity - 1; 0 when the table is not allocated */
    size_t count;
    uint32_t next_id;
    size_t *acct; /* bytes, shared with the owner's accounting */
} scan_paths;

/* Initialises an empty table; `acct` receives the byte count of every allocation. */
void scan_paths_init(scan_paths *sp, size_t *acct);
void scan_paths_destroy(scan_paths *sp);

/* Registers dotted path `path` (len bytes; may contain any byte). Returns its node (one more
 * reference on it and every prefix), or NULL when out of memory (nothing changed). */
scan_node *scan_paths_acquire(scan_paths *sp, const char *path, size_t len);
/* The node of registered path `path`, or NULL. */
scan_node *scan_paths_find(const scan_paths *sp, const char *path, size_t len);
/* Drops one registration of the path of `node` (acquired before). */
void scan_paths_release(scan_paths *sp, scan_node *node);

/* Leaf kinds. */
enum scan_type { SCAN_STRING = 1, SCAN_NUMBER, SCAN_TRUE, SCAN_FALSE, SCAN_NULL };

typedef struct scan_value {
    int type;
    const char *s; /* STRING: the raw bytes between the quotes; NUMBER: the number's text */
    size_t len;
    int escaped; /* STRING: the raw bytes contain escapes (decode with scan_unescape) */
} scan_value;

typedef struct scan_ctx_rec {
    uint32_t parent; /* enclosing context, 0: none */
    uint32_t array;  /* id of the array this context is an element of */
    uint32_t index;  /* element index */
    uint32_t depth;  /* number of enclosing arrays, >= 1 */
} scan_ctx_rec;

struct scan_level {
    uint32_t array;
    uint32_t index;
    uint32_t ctx; /* context of the current element, 0 until asked for */
};

struct scan_frame {
    const scan_node *node;
    uint32_t is_object;
};

typedef struct scan scan;
typedef void (*scan_leaf_fn)(void *ud, scan *s, const scan_node *node, const scan_value *v);

/* Per-event state, reused across events. Owned by the caller (embedded or allocated). */
struct scan {
    scan_ctx_rec *ctx;
    uint32_t nctx, cap_ctx;
    struct scan_level *levels; /* the arrays enclosing the current position */
    uint32_t nlevels, cap_levels;
    struct scan_frame *frames; /* the containers walked under named paths */
    uint32_t cap_frames;
    uint32_t next_array;
    char *buf; /* unescaped keys */
    size_t cap_buf;
    size_t *acct;
};

void scan_init(scan *s, size_t *acct);
void scan_destroy(scan *s);
/* Releases per-event buffers larger than `keep` bytes (a huge event should not pin memory). */
void scan_trim(scan *s, size_t keep);

/*
 * Walks one event. Calls fn for every leaf at a node with leaf data, in
 * document order. Returns 0, EVBUS_EINVAL (not a JSON object, malformed,
 * too deep; message in err) or EVBUS_ENOMEM.
 */
int scan_event(scan *s, const scan_paths *sp, const char *text, size_t len, scan_leaf_fn fn,
               void *ud, char *err, size_t err_len);

/* Context of the leaf being reported (call from the callback only). 0: under no array, or
 * UINT32_MAX when out of memory. */
uint32_t scan_leaf_ctx(scan *s);

static inline int scan_in_array(const scan *s)
{
    return s->nlevels > 0;
}

/* 1 when leaves in contexts a and b may be chosen together (event-ruler's array consistency). */
int scan_consistent(const scan *s, uint32_t a, uint32_t b);

/*
 * Decodes the escapes of a validated raw JSON string body into out (room for len bytes:
 * decoding never grows). Returns the decoded length.
 */
size_t scan_unescape(const char *raw, size_t len, char *out);

#endif
