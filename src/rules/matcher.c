/*
 * rules/matcher: every rule of a bus compiled into one shared structure; one
 * pass over the event text yields every matching rule (the approach of
 * aws/event-ruler and quamina). Semantics are those of pattern.h; the
 * reference evaluator (eval.c) is the oracle the tests compare against.
 *
 * Structure
 *  - Fields: one `field` per dotted path some condition names, hung on the
 *    scanner's path node (scan_node.leaf). The scanner (scan.c) reports only
 *    leaves at such nodes and skips every other subtree. Leaves are recorded
 *    during the scan (with the hashes of their probes computed and the table
 *    slots prefetched, so the cache misses overlap the rest of the scan) and
 *    processed right after it, in document order.
 *  - Value indexes, shared by all rules, per field:
 *      exact strings, numbers (ordered 64-bit encoding of the double, so 300,
 *      300.0 and 3e2 are one key), equals-ignore-case (case-folded key),
 *      prefixes and suffixes (one key per pattern, probed once per distinct
 *      pattern length present at the field), CIDR blocks (key = prefix
 *      length + masked address, probed once per distinct prefix length) all
 *      live in one hash table of `kentry` keyed by (field, kind, bytes);
 *      true / false / null / exists:true are per-field action lists; numeric
 *      ranges are a per-field 16-ary radix tree over the ordered keys (a
 *      range is stored where its bounds' digits part; a lookup walks at most
 *      16 levels and is output sensitive); wildcards are keyed by their
 *      longer literal end (head as a prefix, tail as a suffix) and verified,
 *      and only "*x*" shapes are tried one by one; anything-but is a
 *      complement: its items are registered as exclusions, and after a
 *      leaf's lookups every anything-but of the field that was not excluded
 *      fires (or, beside another required condition, is judged after the scan
 *      for candidates only: see DEFERRED ANYTHING-BUT in conj_build).
 *    Each key carries actions: "condition c of conjunction j holds for this
 *    leaf" (fire) or "anything-but a is excluded for this leaf" (exclude).
 *    So the cost of a leaf is a constant number of probes per distinct
 *    operator shape at its field, plus the actions that really fire: it does
 *    not grow with the number of rules for exact, prefix, suffix,
 *    ignore-case, numeric, cidr and anything-but rules (beyond the matches
 *    themselves: an anything-but alone matches nearly every event).
 *  - Conjunctions: a conjunction of one condition without exists:false is
 *    "simple": a fire is a match. Others keep per-event state (stamped with
 *    the event sequence, so nothing is cleared between events): bits of the
 *    conditions fired, by a leaf under no array ("root") or at all; when the
 *    required conditions (without exists:false, not deferred) have all fired
 *    the conjunction is a candidate. Leaves inside arrays also record an
 *    occurrence (condition, array context) for the consistency check.
 *    Conjunctions whose conditions all carry exists:false ("absent-only")
 *    are candidates for every event.
 *  - Resolution, per candidate after the scan: with no array involved the
 *    answer is immediate; otherwise conjunctions without exists:false are
 *    decided by a dynamic programme over the array-context tree (families of
 *    condition sets achievable within one element, combined across arrays,
 *    linear in the occurrences), and those with exists:false (or more than
 *    64 conditions) by the reference's depth-first search in condition
 *    order over the recorded occurrences, remembering failed states keyed
 *    by the array choices that can still matter (as eval.c does), so
 *    independent arrays do not multiply.
 *
 * Add and delete are incremental: a rule records every registration it made
 * (key actions, list actions, range entries, anything-but records); deleting
 * undoes them and frees whatever becomes empty (keys, fields, path nodes,
 * tree nodes; tables shrink), so memory returns to its previous size. Every
 * allocation is accounted (mem.h); rules_matcher_memory() is exact, and the
 * per-event scratch is released when the last rule goes.
 *
 * Invariants
 *  1. A kentry exists iff its action list is non-empty; a field exists iff
 *     some condition names its path (field.refs > 0); a range-tree slot
 *     exists iff it holds a child, a cover or a bound entry.
 *  2. field.nkeys[k] is the number of kentries of kind k at the field, and
 *     field.lens[] holds each distinct key length of the prefix-like kinds
 *     with the number of kentries of that length.
 *  3. Per-event state (conj.stamp, rule.stamp, field.ev_stamp) is valid only
 *     when its stamp equals the current event sequence; ab.stamp compares
 *     with the leaf sequence.
 *  4. field.ctx_users counts the conditions of non-simple conjunctions at the
 *     field: only their leaves need array contexts (scan_leaf_ctx).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evbus/errors.h"
#include "rules/mem.h"
#include "rules/pattern.h"
#include "rules/rules.h"
#include "rules/scan.h"

#define KEY_SEED 0x6b65796b65797365ull
#define RULE_SEED 0x72756c6572756c65ull
#define SCRATCH_KEEP (64u << 10) /* per-event buffers above this are released after a match */
#define DP_MAX_FAMILY 256        /* beyond this many condition sets, fall back to search */

enum key_kind {
    K_STR,
    K_NUM,
    K_EQIC,
    K_PREFIX, /* first kind with a length set */
    K_SUFFIX,
    K_PREFIX_IC,
    K_SUFFIX_IC,
    K_CIDR4,
    K_CIDR6,
    K__N
};
#define K_FIRST_LEN K_PREFIX
#define N_LENSETS (K__N - K_FIRST_LEN)

struct conj;
struct ab;

typedef struct wild {
    rules_wildcard wc; /* segs and their bytes live in the same block */
    size_t bytes;
} wild;

/* One action: condition `cond` of conj `obj` holds, or anything-but `obj` is excluded. */
typedef struct act {
    void *obj;
    const wild *wc; /* verify the leaf against this wildcard first, or NULL */
    uint32_t cond;
    uint32_t excl;
} act;

typedef struct actlist {
    act *v;
    uint32_t n, cap;
} actlist;

typedef struct kentry {
    struct field *f;
    uint64_t hash;
    actlist acts;
    uint32_t len;
    uint8_t kind;
    char key[];
} kentry;

typedef struct lenref {
    uint32_t len, refs;
} lenref;

typedef struct lenset {
    lenref *v; /* ascending by len */
    uint32_t n, cap;
} lenset;

/*
 * Numeric ranges: a 16-ary radix tree over the ordered 64-bit keys, 4 bits a level. A range
 * [lo, hi] (lo < hi) is stored at the node where the digits of lo and hi first differ
 * (dl < dh): the slots strictly between get the action as a "cover" (every key below them is
 * inside), slot dl gets a lower-bound entry (inside when key >= lo) and slot dh an
 * upper-bound entry (inside when key <= hi). A lookup walks the key's digits down (at most 16
 * nodes) and fires, in each slot on the way, every cover, the lower-bound entries in
 * ascending order while bound <= key and the upper-bound entries in descending order while
 * bound >= key: output-sensitive, whatever the number of ranges.
 */
typedef struct bentry {
    uint64_t bound;
    act a;
} bentry;

typedef struct blist {
    bentry *v;
    uint32_t n, cap;
} blist;

struct rnode;
typedef struct rslot {
    struct rnode *child;
    actlist cover;
    blist lo; /* ascending bound */
    blist hi; /* descending bound */
} rslot;

typedef struct rnode {
    uint32_t mask; /* digits with a slot */
    uint32_t cap;
    rslot *slots; /* ascending digit: slot of digit d at popcount(mask & ((1 << d) - 1)) */
} rnode;

typedef struct rrange {
    uint64_t lo, hi;
} rrange;

typedef struct ab {
    struct conj *conj;
    uint32_t cond;
    uint32_t pos;      /* index in field.abs (eager ones only) */
    uint64_t stamp;    /* eager: the leaf sequence an item excluded */
    uint32_t deferred; /* see DEFERRED ANYTHING-BUT in conj_build; exclusions go to matcher.abx */
} ab;

typedef struct field {
    scan_node *node;
    uint32_t refs;
    uint32_t absent_refs; /* conditions with exists:false: record this field's leaves */
    uint32_t ctx_users;   /* conditions that need the array context of this field's leaves */
    uint32_t dab_refs;    /* deferred anything-but conditions: record every leaf */
    uint32_t nkeys[K__N];
    uint32_t ic_keys; /* keys of the folded kinds */
    lenset lens[N_LENSETS];
    actlist exists, is_true, is_false, is_null, wild_any;
    rnode *ranges; /* NULL: no numeric range at this field */
    ab **abs;
    uint32_t nab, cap_ab;
    /* per event */
    uint64_t ev_stamp;
    uint32_t ev_root;  /* a leaf under no array */
    uint32_t ev_head;  /* leaves in arrays: index + 1 into matcher.lrec */
    uint32_t ev_dhead; /* every leaf (deferred anything-but): index + 1 into matcher.dleaf */
} field;

enum reg_type { REG_NONE, REG_KEY, REG_LIST, REG_RANGE, REG_AB };

typedef struct reg {
    uint8_t type;
    void *p; /* kentry *, actlist *, rrange *, ab * */
    act a;
} reg;

typedef struct mcond {
    field *f;
    reg *regs;
    uint32_t nregs, cap_regs;
    uint32_t has_absent;
    uint32_t deferred; /* only anything-but alts, judged after the scan (see ab_resolve) */
} mcond;

#define CJ_CANDIDATE 1u
#define CJ_ARRAY 2u /* some fire came from a leaf in an array */

/* Hot fields first: a fire touches only the first cache line for small conjunctions. */
typedef struct conj {
    uint64_t stamp;
    uint32_t nfired;
    uint32_t nreq;  /* conditions without exists:false */
    uint32_t words; /* 64-bit words per condition bitset */
    uint32_t simple;
    uint32_t flags;
    uint32_t occ_head; /* index + 1 into matcher.occ */
    struct rule *rule;
    mcond *conds;
    uint32_t nconds;
    uint32_t nabsent;
    uint32_t ndeferred;   /* deferred anything-but conditions */
    uint32_t alist_pos;   /* index in matcher.absent_only when nreq == 0 */
    uint32_t ctx_counted; /* its fields' ctx_users count it */
    uint64_t bits[];      /* fired[words], root[words], required[words] (constant) */
} conj;

typedef struct rule {
    uint64_t id;
    uint64_t stamp;
    conj **conjs;
    uint32_t nconjs;
    size_t mem_bytes; /* accounted bytes this rule added when it was compiled */
} rule;

struct occ {
    uint32_t ctx, cond, next;
};
/* A leaf seen by the scanner, processed once the scan is over: its exact-string probe was
 * prefetched meanwhile, so the table's cache miss overlaps the rest of the scan. */
struct leafrec {
    struct field *f;
    const char *s; /* into the event text */
    size_t len;
    uint32_t hoff; /* probe hashes in matcher.ph, when has_h */
    uint32_t foff; /* case-folded copy in matcher.fold, when has_h and the field folds */
    uint32_t ctx;
    uint8_t type, escaped, in_array, has_h;
};
struct lrec {
    uint32_t ctx, next;
};
struct dleaf {
    uint64_t vseq;
    uint32_t ctx, next;
    uint32_t in_array;
};
struct abx {
    uint64_t vseq;
    const struct ab *b;
};
struct slot {
    uint64_t h;
    void *p;
};
typedef struct htab {
    struct slot *s;
    size_t mask, count;
} htab;

struct dpmark {
    uint32_t gen, slot; /* slot + 1 */
};
struct dpslot {
    uint32_t ctx;
    uint32_t groups; /* index + 1 into dp_groups */
    uint64_t direct;
};
struct dpgroup {
    uint32_t array;
    uint32_t fam_off, fam_n;
    uint32_t next;
};

struct rules_matcher {
    size_t acct; /* bytes held, including this struct */
    scan_paths paths;
    scan scanner;
    htab keys;  /* kentry by (field, kind, bytes) */
    htab rules; /* rule by id */
    size_t nrules;
    conj **absent_only;
    uint32_t nabsent_only, cap_absent_only;
    /* per event */
    uint64_t eseq;    /* event sequence */
    uint64_t vseq;    /* leaf sequence (anything-but exclusion stamps) */
    uint32_t cur_ctx; /* array context of the leaf being processed */
    int cur_in_array;
    struct leafrec *lv; /* the event's leaves at named fields, processed after the scan */
    uint32_t nlv, cap_lv;
    uint64_t *ph; /* probe hashes computed (and prefetched) while scanning */
    uint32_t nph, cap_ph;
    char *fold; /* case-folded copies of this event's string leaves */
    uint32_t nfold, cap_fold;
    int oom;
    uint64_t *out;
    uint32_t nout, cap_out;
    conj **cands;
    uint32_t ncands, cap_cands;
    struct occ *occ;
    uint32_t nocc, cap_occ;
    struct lrec *lrec;
    uint32_t nlrec, cap_lrec;
    struct dleaf *dleaf; /* leaves of fields with deferred anything-but conditions */
    uint32_t ndleaf, cap_dleaf;
    struct abx *abx; /* leaves excluded by deferred anything-but alts */
    uint32_t nabx, cap_abx;
    char *sbuf; /* decoded string */
    size_t cap_sbuf;
    char *fbuf; /* case-folded decoded string */
    size_t cap_fbuf;
    /* resolution scratch */
    struct dpmark *dp_mark; /* per context: its dp slot, valid when gen == dp_stamp */
    uint32_t cap_dp_ctx;
    uint32_t dp_stamp;
    struct dpslot *dp_slots;
    uint32_t ndp_slots, cap_dp_slots;
    struct dpgroup *dp_groups;
    uint32_t ndp_groups, cap_dp_groups;
    uint64_t *dp_fam;
    uint32_t ndp_fam, cap_dp_fam;
    uint32_t *bt_opt; /* search: per condition option contexts */
    uint32_t nbt_opt, cap_bt_opt;
    uint32_t *bt_start; /* per condition: first option, count, common outermost array */
    uint32_t cap_bt_start;
    uint32_t *bt_chosen;
    uint32_t cap_bt_chosen;
    uint64_t *bt_rel;
    uint32_t cap_bt_rel;
    uint32_t *memo_arena; /* failed search states */
    uint32_t nmemo_arena, cap_memo_arena;
    uint32_t *memo_tab;
    uint32_t memo_mask, nmemo;
};

/* ------------------------------------------------------------ small helpers */

static int grow_arr(rules_matcher *m, void **p, uint32_t *cap, size_t elem, size_t need)
{
    if (need <= *cap)
        return 0;
    if (need > UINT32_MAX / 2)
        return EVBUS_ENOMEM;
    uint32_t c = *cap ? *cap : 1;
    while (c < need)
        c *= 2;
    void *q = mem_realloc(&m->acct, *p, (size_t)*cap * elem, (size_t)c * elem);
    if (q == NULL)
        return EVBUS_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static void free_arr(rules_matcher *m, void **p, uint32_t *cap, size_t elem)
{
    mem_free(&m->acct, *p, (size_t)*cap * elem);
    *p = NULL;
    *cap = 0;
}

/* Order-preserving 64-bit key of a double: equal numbers (300, 3e2, -0/0) get one key. */
static inline uint64_t num_key(double d)
{
    if (d == 0)
        d = 0.0;
    uint64_t b;
    memcpy(&b, &d, 8);
    return (b >> 63) ? ~b : b | (1ull << 63);
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Parses a validated JSON number as strtod would (correctly rounded). */
static double parse_number(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    uint64_t mant = 0;
    int digits = 0, e10 = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (digits < 19) {
            mant = mant * 10 + (uint64_t)(*p - '0');
            if (mant != 0)
                digits++;
        } else {
            goto slow;
        }
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (digits >= 19)
                goto slow;
            mant = mant * 10 + (uint64_t)(*p - '0');
            if (mant != 0)
                digits++;
            e10--;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0, ev = 0;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (ev > 10000)
                goto slow;
            ev = ev * 10 + (*p - '0');
        }
        e10 += eneg ? -ev : ev;
    }
    /* Clinger's fast path: both the mantissa and the power of ten are exact doubles. */
    if (mant <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
        double d = (double)mant;
        d = e10 < 0 ? d / POW10[-e10] : d * POW10[e10];
        return neg ? -d : d;
    }
    if (mant == 0)
        return neg ? -0.0 : 0.0;
#if defined(__x86_64__) && LDBL_MANT_DIG == 64
    /*
     * 17 to 19 digits (coordinates): one x87 operation on exact operands (the mantissa and
     * 10^k, k <= 27, are exact in 64 bits) is correctly rounded to 64 bits; rounding that to
     * 53 bits again is the correct double unless the 64-bit result sits exactly on a midpoint
     * between two doubles (its low 11 bits are 0x400): then ask strtod.
     */
    if (e10 >= -27 && e10 <= 27) {
        static const long double P10L[] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                           1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                           1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                           1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
        long double x = (long double)mant;
        x = e10 < 0 ? x / P10L[-e10] : x * P10L[e10];
        uint64_t bits;
        memcpy(&bits, &x, 8); /* the explicit 64-bit significand */
        if ((bits & 0x7ff) != 0x400) {
            double d = (double)x;
            return neg ? -d : d;
        }
    }
#endif
slow:;
    char small[64];
    char *buf = len < sizeof(small) ? small : malloc(len + 1);
    if (buf == NULL)
        return 0; /* cannot happen for real event numbers of sane length */
    memcpy(buf, s, len);
    buf[len] = '\0';
    double d = strtod(buf, NULL);
    if (buf != small)
        free(buf);
    return d;
}

/* --------------------------------------------------------------- hash table */

static int htab_resize(rules_matcher *m, htab *t, size_t cap)
{
    struct slot *s = mem_calloc(&m->acct, cap * sizeof(*s));
    if (s == NULL)
        return EVBUS_ENOMEM;
    for (size_t i = 0; t->s != NULL && i <= t->mask; i++) {
        if (t->s[i].p == NULL)
            continue;
        size_t j = t->s[i].h & (cap - 1);
        while (s[j].p != NULL)
            j = (j + 1) & (cap - 1);
        s[j] = t->s[i];
    }
    if (t->s != NULL)
        mem_free(&m->acct, t->s, (t->mask + 1) * sizeof(*s));
    t->s = s;
    t->mask = cap - 1;
    return 0;
}

/* Makes room for one more entry. */
static int htab_reserve(rules_matcher *m, htab *t)
{
    if (t->s != NULL && (t->count + 1) * 4 <= (t->mask + 1) * 3)
        return 0;
    return htab_resize(m, t, t->s == NULL ? 16 : (t->mask + 1) * 2);
}

static void htab_insert(htab *t, uint64_t h, void *p)
{
    size_t i = h & t->mask;
    while (t->s[i].p != NULL)
        i = (i + 1) & t->mask;
    t->s[i].h = h;
    t->s[i].p = p;
    t->count++;
}

static void htab_remove(rules_matcher *m, htab *t, uint64_t h, const void *p)
{
    size_t mask = t->mask;
    size_t i = h & mask;
    while (t->s[i].p != p)
        i = (i + 1) & mask;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (t->s[j].p == NULL)
            break;
        size_t home = t->s[j].h & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->s[i] = t->s[j];
            i = j;
        }
    }
    t->s[i].p = NULL;
    t->s[i].h = 0;
    t->count--;
    if (t->count == 0) {
        mem_free(&m->acct, t->s, (mask + 1) * sizeof(struct slot));
        t->s = NULL;
        t->mask = 0;
    } else if (mask + 1 > 16 && t->count * 8 < mask + 1) {
        (void)htab_resize(m, t, (mask + 1) / 2);
    }
}

static inline uint64_t key_hash(const field *f, int kind, const void *k, size_t len)
{
    return mem_hash(k, len, KEY_SEED ^ ((uint64_t)f->node->id << 8 | (uint64_t)kind));
}

static inline kentry *key_find(const rules_matcher *m, const field *f, int kind, const void *k,
                               size_t len, uint64_t h)
{
    const htab *t = &m->keys;
    if (t->s == NULL)
        return NULL;
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct slot *s = &t->s[i];
        if (s->p == NULL)
            return NULL;
        if (s->h == h) {
            kentry *e = s->p;
            if (e->f == f && e->kind == kind && e->len == len && memcmp(e->key, k, len) == 0)
                return e;
        }
    }
}

static inline uint64_t rule_hash(uint64_t id)
{
    return mem_mix(id ^ RULE_SEED, 0x9e3779b97f4a7c15ull);
}

static rule *rule_find(const rules_matcher *m, uint64_t id)
{
    const htab *t = &m->rules;
    if (t->s == NULL)
        return NULL;
    uint64_t h = rule_hash(id);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        if (t->s[i].p == NULL)
            return NULL;
        if (t->s[i].h == h && ((rule *)t->s[i].p)->id == id)
            return t->s[i].p;
    }
}

/* ------------------------------------------------------------- action lists */

static int actlist_add(rules_matcher *m, actlist *l, const act *a)
{
    if (grow_arr(m, (void **)&l->v, &l->cap, sizeof(act), (size_t)l->n + 1) != 0)
        return EVBUS_ENOMEM;
    l->v[l->n++] = *a;
    return 0;
}

static void actlist_remove(rules_matcher *m, actlist *l, const act *a)
{
    for (uint32_t i = 0; i < l->n; i++) {
        act *x = &l->v[i];
        if (x->obj == a->obj && x->cond == a->cond && x->excl == a->excl && x->wc == a->wc) {
            *x = l->v[--l->n];
            break;
        }
    }
    if (l->n == 0) {
        free_arr(m, (void **)&l->v, &l->cap, sizeof(act));
    } else if (l->n * 4 <= l->cap && l->cap > 8) {
        act *v = mem_realloc(&m->acct, l->v, l->cap * sizeof(act), (l->cap / 2) * sizeof(act));
        if (v != NULL) {
            l->v = v;
            l->cap /= 2;
        }
    }
}

/* ------------------------------------------------------------------ lensets */

static int lenset_add(rules_matcher *m, lenset *s, uint32_t len)
{
    uint32_t i = 0;
    while (i < s->n && s->v[i].len < len)
        i++;
    if (i < s->n && s->v[i].len == len) {
        s->v[i].refs++;
        return 0;
    }
    if (grow_arr(m, (void **)&s->v, &s->cap, sizeof(lenref), (size_t)s->n + 1) != 0)
        return EVBUS_ENOMEM;
    memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(lenref));
    s->v[i].len = len;
    s->v[i].refs = 1;
    s->n++;
    return 0;
}

static void lenset_remove(rules_matcher *m, lenset *s, uint32_t len)
{
    uint32_t i = 0;
    while (i < s->n && s->v[i].len != len)
        i++;
    if (i == s->n || --s->v[i].refs > 0)
        return;
    memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(lenref));
    if (--s->n == 0)
        free_arr(m, (void **)&s->v, &s->cap, sizeof(lenref));
}

/* The length under which a key of kind k is counted in its field's length set. */
static uint32_t key_lenclass(int kind, const char *key, uint32_t len)
{
    if (kind == K_CIDR4 || kind == K_CIDR6)
        return (uint8_t)key[0]; /* prefix bits */
    return len;
}

/* -------------------------------------------------------------------- keys */

static int key_add(rules_matcher *m, field *f, int kind, const void *k, size_t len, const act *a,
                   reg *r)
{
    if (len > UINT32_MAX)
        return EVBUS_ENOMEM;
    uint64_t h = key_hash(f, kind, k, len);
    kentry *e = key_find(m, f, kind, k, len, h);
    if (e == NULL) {
        if (htab_reserve(m, &m->keys) != 0)
            return EVBUS_ENOMEM;
        e = mem_calloc(&m->acct, sizeof(*e) + len);
        if (e == NULL)
            return EVBUS_ENOMEM;
        e->f = f;
        e->hash = h;
        e->len = (uint32_t)len;
        e->kind = (uint8_t)kind;
        if (len > 0)
            memcpy(e->key, k, len);
        if (kind >= K_FIRST_LEN &&
            lenset_add(m, &f->lens[kind - K_FIRST_LEN], key_lenclass(kind, e->key, e->len)) != 0) {
            mem_free(&m->acct, e, sizeof(*e) + len);
            return EVBUS_ENOMEM;
        }
        if (actlist_add(m, &e->acts, a) != 0) {
            if (kind >= K_FIRST_LEN)
                lenset_remove(m, &f->lens[kind - K_FIRST_LEN], key_lenclass(kind, e->key, e->len));
            mem_free(&m->acct, e, sizeof(*e) + len);
            return EVBUS_ENOMEM;
        }
        htab_insert(&m->keys, h, e);
        f->nkeys[kind]++;
        if (kind == K_EQIC || kind == K_PREFIX_IC || kind == K_SUFFIX_IC)
            f->ic_keys++;
    } else if (actlist_add(m, &e->acts, a) != 0) {
        return EVBUS_ENOMEM;
    }
    r->type = REG_KEY;
    r->p = e;
    r->a = *a;
    return 0;
}

static void key_remove(rules_matcher *m, kentry *e, const act *a)
{
    actlist_remove(m, &e->acts, a);
    if (e->acts.n > 0)
        return;
    field *f = e->f;
    htab_remove(m, &m->keys, e->hash, e);
    f->nkeys[e->kind]--;
    if (e->kind == K_EQIC || e->kind == K_PREFIX_IC || e->kind == K_SUFFIX_IC)
        f->ic_keys--;
    if (e->kind >= K_FIRST_LEN)
        lenset_remove(m, &f->lens[e->kind - K_FIRST_LEN], key_lenclass(e->kind, e->key, e->len));
    mem_free(&m->acct, e, sizeof(*e) + e->len);
}

/* -------------------------------------------------------- range radix tree */

static inline uint32_t digit_at(uint64_t key, uint32_t depth)
{
    return (uint32_t)(key >> (60 - 4 * depth)) & 15u;
}

static inline uint32_t pop16(uint32_t x)
{
    x = x - ((x >> 1) & 0x5555u);
    x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
    x = (x + (x >> 4)) & 0x0f0fu;
    return (x + (x >> 8)) & 0x1fu;
}

static inline rslot *rnode_slot(const rnode *n, uint32_t d)
{
    if (!(n->mask & (1u << d)))
        return NULL;
    return &n->slots[pop16(n->mask & ((1u << d) - 1))];
}

static rslot *rnode_slot_get(rules_matcher *m, rnode *n, uint32_t d)
{
    rslot *sl = rnode_slot(n, d);
    if (sl != NULL)
        return sl;
    uint32_t cnt = pop16(n->mask);
    if (grow_arr(m, (void **)&n->slots, &n->cap, sizeof(rslot), (size_t)cnt + 1) != 0)
        return NULL;
    uint32_t at = pop16(n->mask & ((1u << d) - 1));
    memmove(&n->slots[at + 1], &n->slots[at], (cnt - at) * sizeof(rslot));
    memset(&n->slots[at], 0, sizeof(rslot));
    n->mask |= 1u << d;
    return &n->slots[at];
}

/* Removes slot d of n when nothing is left in it; frees the node's array when empty. */
static void rnode_slot_prune(rules_matcher *m, rnode *n, uint32_t d)
{
    rslot *sl = rnode_slot(n, d);
    if (sl == NULL || sl->child != NULL || sl->cover.n || sl->lo.n || sl->hi.n)
        return;
    uint32_t cnt = pop16(n->mask);
    uint32_t at = (uint32_t)(sl - n->slots);
    memmove(&n->slots[at], &n->slots[at + 1], (cnt - at - 1) * sizeof(rslot));
    n->mask &= ~(1u << d);
    if (n->mask == 0)
        free_arr(m, (void **)&n->slots, &n->cap, sizeof(rslot));
}

static int blist_add(rules_matcher *m, blist *l, uint64_t bound, const act *a, int ascending)
{
    if (grow_arr(m, (void **)&l->v, &l->cap, sizeof(bentry), (size_t)l->n + 1) != 0)
        return EVBUS_ENOMEM;
    uint32_t i = l->n;
    while (i > 0 && (ascending ? l->v[i - 1].bound > bound : l->v[i - 1].bound < bound)) {
        l->v[i] = l->v[i - 1];
        i--;
    }
    l->v[i].bound = bound;
    l->v[i].a = *a;
    l->n++;
    return 0;
}

static void blist_remove(rules_matcher *m, blist *l, uint64_t bound, const act *a)
{
    for (uint32_t i = 0; i < l->n; i++) {
        const bentry *e = &l->v[i];
        if (e->bound == bound && e->a.obj == a->obj && e->a.cond == a->cond) {
            memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(bentry));
            l->n--;
            break;
        }
    }
    if (l->n == 0)
        free_arr(m, (void **)&l->v, &l->cap, sizeof(bentry));
}

/* Undoes range_add for [lo, hi] up to (not including) the step that failed, if any. */
static void range_remove(rules_matcher *m, field *f, uint64_t lo, uint64_t hi, const act *a)
{
    rnode *path[17];
    uint32_t digits[17];
    uint32_t depth = 0;
    rnode *n = f->ranges;
    while (n != NULL && digit_at(lo, depth) == digit_at(hi, depth)) {
        rslot *sl = rnode_slot(n, digit_at(lo, depth));
        if (sl == NULL)
            break;
        path[depth] = n;
        digits[depth] = digit_at(lo, depth);
        n = sl->child;
        depth++;
    }
    if (n != NULL && digit_at(lo, depth) != digit_at(hi, depth)) {
        uint32_t dl = digit_at(lo, depth), dh = digit_at(hi, depth);
        rslot *sl;
        for (uint32_t d = dl + 1; d < dh; d++) {
            if ((sl = rnode_slot(n, d)) != NULL) {
                actlist_remove(m, &sl->cover, a);
                rnode_slot_prune(m, n, d);
            }
        }
        if ((sl = rnode_slot(n, dl)) != NULL) {
            blist_remove(m, &sl->lo, lo, a);
            rnode_slot_prune(m, n, dl);
        }
        if ((sl = rnode_slot(n, dh)) != NULL) {
            blist_remove(m, &sl->hi, hi, a);
            rnode_slot_prune(m, n, dh);
        }
    }
    /* Free emptied nodes bottom-up. */
    while (n != NULL && n->mask == 0) {
        mem_free(&m->acct, n, sizeof(*n));
        if (depth == 0) {
            f->ranges = NULL;
            break;
        }
        depth--;
        rslot *sl = rnode_slot(path[depth], digits[depth]);
        sl->child = NULL;
        rnode_slot_prune(m, path[depth], digits[depth]);
        n = path[depth];
    }
}

static int range_add(rules_matcher *m, field *f, uint64_t lo, uint64_t hi, const act *a)
{
    if (f->ranges == NULL && (f->ranges = mem_calloc(&m->acct, sizeof(rnode))) == NULL)
        return EVBUS_ENOMEM;
    rnode *n = f->ranges;
    uint32_t depth = 0;
    for (; digit_at(lo, depth) == digit_at(hi, depth); depth++) {
        rslot *sl = rnode_slot_get(m, n, digit_at(lo, depth));
        if (sl == NULL)
            goto fail;
        if (sl->child == NULL && (sl->child = mem_calloc(&m->acct, sizeof(rnode))) == NULL) {
            rnode_slot_prune(m, n, digit_at(lo, depth));
            goto fail;
        }
        n = sl->child;
    }
    uint32_t dl = digit_at(lo, depth), dh = digit_at(hi, depth);
    rslot *sl;
    for (uint32_t d = dl + 1; d < dh; d++)
        if ((sl = rnode_slot_get(m, n, d)) == NULL || actlist_add(m, &sl->cover, a) != 0)
            goto fail;
    if ((sl = rnode_slot_get(m, n, dl)) == NULL || blist_add(m, &sl->lo, lo, a, 1) != 0)
        goto fail;
    if ((sl = rnode_slot_get(m, n, dh)) == NULL || blist_add(m, &sl->hi, hi, a, 0) != 0)
        goto fail;
    return 0;
fail:
    /* Removing what is not there is harmless: undo whatever part was done. */
    range_remove(m, f, lo, hi, a);
    return EVBUS_ENOMEM;
}

/* ------------------------------------------------------------- wildcards */

static wild *wild_copy(rules_matcher *m, const rules_wildcard *wc)
{
    size_t bytes = sizeof(wild) + wc->nsegs * sizeof(rules_str);
    for (size_t i = 0; i < wc->nsegs; i++)
        bytes += wc->segs[i].len + 1;
    wild *w = mem_alloc(&m->acct, bytes);
    if (w == NULL)
        return NULL;
    w->bytes = bytes;
    w->wc.text.s = NULL;
    w->wc.text.len = 0;
    w->wc.segs = (rules_str *)(w + 1);
    w->wc.nsegs = wc->nsegs;
    char *p = (char *)(w->wc.segs + wc->nsegs);
    for (size_t i = 0; i < wc->nsegs; i++) {
        memcpy(p, wc->segs[i].s, wc->segs[i].len);
        p[wc->segs[i].len] = '\0';
        w->wc.segs[i].s = p;
        w->wc.segs[i].len = wc->segs[i].len;
        p += wc->segs[i].len + 1;
    }
    return w;
}

/* ------------------------------------------------------------------ fields */

static field *field_get(rules_matcher *m, const rules_str *path)
{
    scan_node *n = scan_paths_find(&m->paths, path->s, path->len);
    if (n != NULL && n->leaf != NULL) {
        field *f = n->leaf;
        f->refs++;
        return f;
    }
    field *f = mem_calloc(&m->acct, sizeof(*f));
    if (f == NULL)
        return NULL;
    n = scan_paths_acquire(&m->paths, path->s, path->len);
    if (n == NULL) {
        mem_free(&m->acct, f, sizeof(*f));
        return NULL;
    }
    f->node = n;
    f->refs = 1;
    n->leaf = f;
    return f;
}

static void field_put(rules_matcher *m, field *f)
{
    if (--f->refs > 0)
        return;
    f->node->leaf = NULL;
    scan_paths_release(&m->paths, f->node);
    free_arr(m, (void **)&f->abs, &f->cap_ab, sizeof(ab *));
    mem_free(&m->acct, f, sizeof(*f));
}

/* ---------------------------------------------------------- registration */

static int cond_reg(rules_matcher *m, mcond *c, reg **out)
{
    if (grow_arr(m, (void **)&c->regs, &c->cap_regs, sizeof(reg), (size_t)c->nregs + 1) != 0)
        return EVBUS_ENOMEM;
    *out = &c->regs[c->nregs];
    memset(*out, 0, sizeof(reg));
    return 0;
}

static int list_add(rules_matcher *m, mcond *c, actlist *l, const act *a)
{
    reg *r;
    if (cond_reg(m, c, &r) != 0 || actlist_add(m, l, a) != 0)
        return EVBUS_ENOMEM;
    r->type = REG_LIST;
    r->p = l;
    r->a = *a;
    c->nregs++;
    return 0;
}

static int key_reg(rules_matcher *m, mcond *c, int kind, const void *k, size_t len, const act *a)
{
    reg *r;
    if (cond_reg(m, c, &r) != 0 || key_add(m, c->f, kind, k, len, a, r) != 0)
        return EVBUS_ENOMEM;
    c->nregs++;
    return 0;
}

static int wild_reg(rules_matcher *m, mcond *c, const rules_wildcard *wc, const act *base)
{
    field *f = c->f;
    if (wc->nsegs == 1) /* no star: plain equality */
        return key_reg(m, c, K_STR, wc->segs[0].s, wc->segs[0].len, base);
    wild *w = wild_copy(m, wc);
    if (w == NULL)
        return EVBUS_ENOMEM;
    act a = *base;
    a.wc = w;
    const rules_str *first = &wc->segs[0];
    const rules_str *last = &wc->segs[wc->nsegs - 1];
    /* Keyed by the longer literal end (fewer candidates to verify); only "*x*" shapes, with
     * no literal end at all, are tried one by one. */
    int rc;
    if (first->len > 0 && first->len >= last->len)
        rc = key_reg(m, c, K_PREFIX, first->s, first->len, &a);
    else if (last->len > 0)
        rc = key_reg(m, c, K_SUFFIX, last->s, last->len, &a);
    else
        rc = list_add(m, c, &f->wild_any, &a);
    if (rc != 0)
        mem_free(&m->acct, w, w->bytes);
    return rc;
}

static void cidr_key(int family, uint32_t bits, const uint8_t *addr, uint8_t *key)
{
    size_t n = family == 4 ? 4 : 16;
    key[0] = (uint8_t)bits;
    for (size_t i = 0; i < n; i++) {
        uint32_t have = i * 8 >= bits ? 0 : bits - (uint32_t)i * 8;
        uint8_t mask = have >= 8 ? 0xff : (uint8_t)(0xff << (8 - have));
        key[1 + i] = addr[i] & mask;
    }
}

static int range_reg(rules_matcher *m, mcond *c, const rules_range *rg, const act *a)
{
    uint64_t lo = 0, hi = UINT64_MAX;
    if (rg->has_lo) {
        lo = num_key(rg->lo);
        if (!rg->lo_incl) {
            if (lo == UINT64_MAX)
                goto empty;
            lo++;
        }
    }
    if (rg->has_hi) {
        hi = num_key(rg->hi);
        if (!rg->hi_incl) {
            if (hi == 0)
                goto empty;
            hi--;
        }
    }
    if (lo > hi)
        goto empty;
    if (lo == hi) {
        uint8_t k[8];
        memcpy(k, &lo, 8);
        return key_reg(m, c, K_NUM, k, 8, a);
    }
    reg *r;
    if (cond_reg(m, c, &r) != 0)
        return EVBUS_ENOMEM;
    rrange *rr = mem_alloc(&m->acct, sizeof(*rr));
    if (rr == NULL)
        return EVBUS_ENOMEM;
    rr->lo = lo;
    rr->hi = hi;
    if (range_add(m, c->f, lo, hi, a) != 0) {
        mem_free(&m->acct, rr, sizeof(*rr));
        return EVBUS_ENOMEM;
    }
    r->type = REG_RANGE;
    r->p = rr;
    r->a = *a;
    c->nregs++;
    return 0;
empty:
    if (cond_reg(m, c, &r) != 0)
        return EVBUS_ENOMEM;
    r->type = REG_NONE;
    c->nregs++;
    return 0;
}

/* Registers one value alt (not anything-but, not exists) with action a. */
static int value_reg(rules_matcher *m, mcond *c, const rules_alt *x, const act *a)
{
    field *f = c->f;
    switch (x->kind) {
    case RULES_ALT_STRING: return key_reg(m, c, K_STR, x->str.s, x->str.len, a);
    case RULES_ALT_NUMBER: {
        uint64_t k = num_key(x->num);
        return key_reg(m, c, K_NUM, &k, 8, a);
    }
    case RULES_ALT_TRUE: return list_add(m, c, &f->is_true, a);
    case RULES_ALT_FALSE: return list_add(m, c, &f->is_false, a);
    case RULES_ALT_NULL: return list_add(m, c, &f->is_null, a);
    case RULES_ALT_PREFIX: return key_reg(m, c, K_PREFIX, x->str.s, x->str.len, a);
    case RULES_ALT_SUFFIX: return key_reg(m, c, K_SUFFIX, x->str.s, x->str.len, a);
    case RULES_ALT_PREFIX_IC: return key_reg(m, c, K_PREFIX_IC, x->folded.s, x->folded.len, a);
    case RULES_ALT_SUFFIX_IC: return key_reg(m, c, K_SUFFIX_IC, x->folded.s, x->folded.len, a);
    case RULES_ALT_EQUALS_IC: {
        /* anything-but items carry `folded` too; fold here if a producer left it empty */
        if (x->folded.s != NULL || x->str.len == 0)
            return key_reg(m, c, K_EQIC, x->folded.s ? x->folded.s : "", x->folded.len, a);
        char *tmp = malloc(x->str.len);
        if (tmp == NULL)
            return EVBUS_ENOMEM;
        rules_casefold(x->str.s, x->str.len, tmp);
        int rc = key_reg(m, c, K_EQIC, tmp, x->str.len, a);
        free(tmp);
        return rc;
    }
    case RULES_ALT_WILDCARD: return wild_reg(m, c, &x->wc, a);
    case RULES_ALT_CIDR: {
        uint8_t k[17];
        int fam = x->cidr.family == 4 ? 4 : 6;
        cidr_key(fam, x->cidr.bits, x->cidr.addr, k);
        return key_reg(m, c, fam == 4 ? K_CIDR4 : K_CIDR6, k, fam == 4 ? 5 : 17, a);
    }
    case RULES_ALT_NUMERIC: return range_reg(m, c, &x->range, a);
    case RULES_ALT_ANYTHING_BUT:
    case RULES_ALT_EXISTS: break;
    }
    return EVBUS_EINVAL;
}

static int ab_reg(rules_matcher *m, mcond *c, conj *cj, uint32_t ci, const rules_alt *x)
{
    field *f = c->f;
    reg *r;
    if (cond_reg(m, c, &r) != 0 ||
        (!c->deferred &&
         grow_arr(m, (void **)&f->abs, &f->cap_ab, sizeof(ab *), (size_t)f->nab + 1) != 0))
        return EVBUS_ENOMEM;
    ab *b = mem_calloc(&m->acct, sizeof(*b));
    if (b == NULL)
        return EVBUS_ENOMEM;
    b->conj = cj;
    b->cond = ci;
    b->deferred = c->deferred;
    if (c->deferred) {
        f->dab_refs++;
    } else {
        b->pos = f->nab;
        f->abs[f->nab++] = b;
    }
    r->type = REG_AB;
    r->p = b;
    c->nregs++;
    /* For exclusions, `cond` says whether the anything-but is deferred (saves a deref). */
    act a = {.obj = b, .wc = NULL, .cond = c->deferred, .excl = 1};
    for (size_t i = 0; i < x->ab.nitems; i++) {
        int rc = value_reg(m, c, &x->ab.items[i], &a);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void reg_undo(rules_matcher *m, mcond *c, reg *r)
{
    field *f = c->f;
    switch (r->type) {
    case REG_NONE: break;
    case REG_KEY: key_remove(m, r->p, &r->a); break;
    case REG_LIST: actlist_remove(m, r->p, &r->a); break;
    case REG_RANGE: {
        rrange *rr = r->p;
        range_remove(m, f, rr->lo, rr->hi, &r->a);
        mem_free(&m->acct, rr, sizeof(*rr));
        break;
    }
    case REG_AB: {
        ab *b = r->p;
        if (b->deferred) {
            f->dab_refs--;
        } else {
            f->abs[b->pos] = f->abs[--f->nab];
            f->abs[b->pos]->pos = b->pos;
            if (f->nab == 0)
                free_arr(m, (void **)&f->abs, &f->cap_ab, sizeof(ab *));
        }
        mem_free(&m->acct, b, sizeof(*b));
        break;
    }
    }
    if (r->type == REG_KEY || r->type == REG_LIST) {
        const wild *w = r->a.wc;
        if (w != NULL)
            mem_free(&m->acct, (void *)w, w->bytes);
    }
}

static size_t conj_size(uint32_t words)
{
    return sizeof(conj) + 3 * (size_t)words * sizeof(uint64_t);
}

static void absent_only_remove(rules_matcher *m, conj *cj)
{
    uint32_t i = cj->alist_pos;
    m->absent_only[i] = m->absent_only[--m->nabsent_only];
    m->absent_only[i]->alist_pos = i;
    if (m->nabsent_only == 0)
        free_arr(m, (void **)&m->absent_only, &m->cap_absent_only, sizeof(conj *));
}

static void conj_destroy(rules_matcher *m, conj *cj)
{
    if (cj->nreq == 0 && cj->alist_pos != UINT32_MAX)
        absent_only_remove(m, cj);
    for (uint32_t i = cj->nconds; i-- > 0;) {
        mcond *c = &cj->conds[i];
        if (c->f == NULL)
            continue;
        for (uint32_t k = c->nregs; k-- > 0;)
            reg_undo(m, c, &c->regs[k]);
        free_arr(m, (void **)&c->regs, &c->cap_regs, sizeof(reg));
        if (c->has_absent)
            c->f->absent_refs--;
        if (!cj->simple && cj->ctx_counted)
            c->f->ctx_users--;
        field_put(m, c->f);
    }
    mem_free(&m->acct, cj->conds, cj->nconds * sizeof(mcond));
    mem_free(&m->acct, cj, conj_size(cj->words));
}

static void rule_destroy(rules_matcher *m, rule *r)
{
    for (uint32_t i = 0; i < r->nconjs; i++)
        if (r->conjs[i] != NULL)
            conj_destroy(m, r->conjs[i]);
    mem_free(&m->acct, r->conjs, r->nconjs * sizeof(conj *));
    mem_free(&m->acct, r, sizeof(*r));
}

static int cond_all_ab(const rules_cond *c)
{
    for (size_t k = 0; k < c->nalts; k++)
        if (c->alts[k].kind != RULES_ALT_ANYTHING_BUT)
            return 0;
    return c->nalts > 0;
}

static int conj_build(rules_matcher *m, rule *r, const rules_conj *pc, conj **out)
{
    uint32_t n = (uint32_t)pc->nconds;
    uint32_t words = (n + 63) / 64;
    conj *cj = mem_calloc(&m->acct, conj_size(words));
    if (cj == NULL)
        return EVBUS_ENOMEM;
    cj->conds = mem_calloc(&m->acct, n * sizeof(mcond));
    if (cj->conds == NULL) {
        mem_free(&m->acct, cj, conj_size(words));
        return EVBUS_ENOMEM;
    }
    cj->rule = r;
    cj->nconds = n;
    cj->words = words;
    cj->alist_pos = UINT32_MAX;
    *out = cj;
    /*
     * DEFERRED ANYTHING-BUT: a condition made only of anything-but alts holds for almost every
     * leaf, so firing it eagerly for every rule would make each event cost as much as the
     * number of such rules. When the conjunction has another required condition, the
     * anything-but condition is instead judged after the scan, for candidates only: its
     * items still record the leaves they exclude (cheap: only on a hit), and the condition
     * holds for every leaf of its field they did not exclude.
     */
    int other_required = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!pc->conds[i].has_absent && !cond_all_ab(&pc->conds[i]))
            other_required = 1;
    for (uint32_t i = 0; i < n; i++) {
        const rules_cond *pcond = &pc->conds[i];
        mcond *c = &cj->conds[i];
        c->f = field_get(m, &pcond->path);
        if (c->f == NULL)
            return EVBUS_ENOMEM;
        c->has_absent = pcond->has_absent != 0;
        c->deferred = other_required && !c->has_absent && cond_all_ab(pcond);
        if (c->has_absent) {
            c->f->absent_refs++;
            cj->nabsent++;
        } else if (c->deferred) {
            cj->ndeferred++;
        } else {
            cj->nreq++;
            cj->bits[2 * words + (i >> 6)] |= 1ull << (i & 63);
        }
        act a = {.obj = cj, .wc = NULL, .cond = i, .excl = 0};
        for (size_t k = 0; k < pcond->nalts; k++) {
            const rules_alt *x = &pcond->alts[k];
            int rc;
            if (x->kind == RULES_ALT_EXISTS) {
                if (!x->exists)
                    continue; /* exists:false chooses no leaf: has_absent */
                rc = list_add(m, c, &c->f->exists, &a);
            } else if (x->kind == RULES_ALT_ANYTHING_BUT) {
                rc = ab_reg(m, c, cj, i, x);
            } else {
                rc = value_reg(m, c, x, &a);
            }
            if (rc != 0)
                return rc;
        }
    }
    cj->simple = n == 1 && cj->nabsent == 0;
    if (!cj->simple)
        for (uint32_t i = 0; i < n; i++)
            cj->conds[i].f->ctx_users++;
    cj->ctx_counted = 1;
    if (cj->nreq == 0) {
        if (grow_arr(m, (void **)&m->absent_only, &m->cap_absent_only, sizeof(conj *),
                     (size_t)m->nabsent_only + 1) != 0)
            return EVBUS_ENOMEM;
        cj->alist_pos = m->nabsent_only;
        m->absent_only[m->nabsent_only++] = cj;
    }
    return 0;
}

/* ------------------------------------------------------------------- API */

int rules_matcher_new(rules_matcher **out)
{
    size_t acct = 0;
    rules_matcher *m = mem_calloc(&acct, sizeof(*m));
    *out = NULL;
    if (m == NULL)
        return EVBUS_ENOMEM;
    m->acct = acct;
    scan_paths_init(&m->paths, &m->acct);
    scan_init(&m->scanner, &m->acct);
    *out = m;
    return 0;
}

/* Releases every per-event buffer (they are regrown on demand). */
static void scratch_free(rules_matcher *m)
{
    scan_destroy(&m->scanner);
    free_arr(m, (void **)&m->out, &m->cap_out, sizeof(uint64_t));
    free_arr(m, (void **)&m->cands, &m->cap_cands, sizeof(conj *));
    free_arr(m, (void **)&m->occ, &m->cap_occ, sizeof(struct occ));
    free_arr(m, (void **)&m->lrec, &m->cap_lrec, sizeof(struct lrec));
    free_arr(m, (void **)&m->dleaf, &m->cap_dleaf, sizeof(struct dleaf));
    free_arr(m, (void **)&m->abx, &m->cap_abx, sizeof(struct abx));
    free_arr(m, (void **)&m->lv, &m->cap_lv, sizeof(struct leafrec));
    free_arr(m, (void **)&m->ph, &m->cap_ph, sizeof(uint64_t));
    free_arr(m, (void **)&m->fold, &m->cap_fold, 1);
    mem_free(&m->acct, m->sbuf, m->cap_sbuf);
    m->sbuf = NULL;
    m->cap_sbuf = 0;
    mem_free(&m->acct, m->fbuf, m->cap_fbuf);
    m->fbuf = NULL;
    m->cap_fbuf = 0;
    free_arr(m, (void **)&m->dp_mark, &m->cap_dp_ctx, sizeof(struct dpmark));
    free_arr(m, (void **)&m->dp_slots, &m->cap_dp_slots, sizeof(struct dpslot));
    free_arr(m, (void **)&m->dp_groups, &m->cap_dp_groups, sizeof(struct dpgroup));
    free_arr(m, (void **)&m->dp_fam, &m->cap_dp_fam, sizeof(uint64_t));
    free_arr(m, (void **)&m->bt_opt, &m->cap_bt_opt, sizeof(uint32_t));
    free_arr(m, (void **)&m->bt_start, &m->cap_bt_start, sizeof(uint32_t));
    free_arr(m, (void **)&m->bt_chosen, &m->cap_bt_chosen, sizeof(uint32_t));
    free_arr(m, (void **)&m->bt_rel, &m->cap_bt_rel, sizeof(uint64_t));
    free_arr(m, (void **)&m->memo_arena, &m->cap_memo_arena, sizeof(uint32_t));
    if (m->memo_tab != NULL)
        mem_free(&m->acct, m->memo_tab, ((size_t)m->memo_mask + 1) * sizeof(uint32_t));
    m->memo_tab = NULL;
    m->memo_mask = 0;
}

void rules_matcher_free(rules_matcher *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; m->rules.s != NULL && i <= m->rules.mask; i++)
        if (m->rules.s[i].p != NULL)
            rule_destroy(m, m->rules.s[i].p);
    if (m->rules.s != NULL)
        mem_free(&m->acct, m->rules.s, (m->rules.mask + 1) * sizeof(struct slot));
    /* Rules own every key, field and path; what is left is per-event scratch. */
    scratch_free(m);
    scan_paths_destroy(&m->paths);
    if (m->keys.s != NULL)
        mem_free(&m->acct, m->keys.s, (m->keys.mask + 1) * sizeof(struct slot));
    free(m);
}

int rules_matcher_add(rules_matcher *m, uint64_t id, const rules_pattern *p)
{
    if (p == NULL || p->nconjs == 0)
        return EVBUS_EINVAL;
    size_t before = m->acct;
    rule *old = rule_find(m, id);
    if (old == NULL && htab_reserve(m, &m->rules) != 0)
        return EVBUS_ENOMEM;
    rule *r = mem_calloc(&m->acct, sizeof(*r));
    if (r == NULL)
        return EVBUS_ENOMEM;
    r->id = id;
    r->conjs = mem_calloc(&m->acct, p->nconjs * sizeof(conj *));
    if (r->conjs == NULL) {
        mem_free(&m->acct, r, sizeof(*r));
        return EVBUS_ENOMEM;
    }
    r->nconjs = (uint32_t)p->nconjs;
    for (uint32_t i = 0; i < r->nconjs; i++) {
        int rc = conj_build(m, r, &p->conjs[i], &r->conjs[i]);
        if (rc != 0) {
            rule_destroy(m, r);
            return rc;
        }
    }
    /* The new rule is complete: only now does it replace the old one. */
    if (old != NULL) {
        uint64_t h = rule_hash(id);
        for (size_t i = h & m->rules.mask;; i = (i + 1) & m->rules.mask) {
            if (m->rules.s[i].p == old) {
                m->rules.s[i].p = r;
                break;
            }
        }
        rule_destroy(m, old);
    } else {
        htab_insert(&m->rules, rule_hash(id), r);
        m->nrules++;
    }
    r->mem_bytes = m->acct > before ? m->acct - before : 0;
    return 0;
}

int rules_matcher_delete(rules_matcher *m, uint64_t id)
{
    rule *r = rule_find(m, id);
    if (r == NULL)
        return EVBUS_ENOTFOUND;
    htab_remove(m, &m->rules, rule_hash(id), r);
    m->nrules--;
    rule_destroy(m, r);
    if (m->nrules == 0)
        scratch_free(m); /* an empty matcher is back to its initial size */
    return 0;
}

size_t rules_matcher_rule_count(const rules_matcher *m)
{
    return m->nrules;
}

size_t rules_matcher_memory(const rules_matcher *m)
{
    return m->acct;
}

/* ----------------------------------------------------------------- match */

static inline void emit(rules_matcher *m, rule *r)
{
    if (r->stamp == m->eseq)
        return;
    r->stamp = m->eseq;
    if (m->nout == m->cap_out &&
        grow_arr(m, (void **)&m->out, &m->cap_out, sizeof(uint64_t), (size_t)m->nout + 1) != 0) {
        m->oom = 1;
        return;
    }
    m->out[m->nout++] = r->id;
}

static inline uint32_t cur_ctx(const rules_matcher *m)
{
    return m->cur_ctx;
}

__attribute__((noinline)) static void fire_occ(rules_matcher *m, conj *cj, uint32_t ci)
{
    uint32_t ctx = cur_ctx(m);
    if (m->nocc == m->cap_occ &&
        grow_arr(m, (void **)&m->occ, &m->cap_occ, sizeof(struct occ), (size_t)m->nocc + 1) != 0) {
        m->oom = 1;
        return;
    }
    struct occ *o = &m->occ[m->nocc++];
    o->ctx = ctx;
    o->cond = ci;
    o->next = cj->occ_head;
    cj->occ_head = m->nocc;
    cj->flags |= CJ_ARRAY;
}

static inline void fire(rules_matcher *m, conj *cj, uint32_t ci)
{
    if (cj->simple) {
        emit(m, cj->rule);
        return;
    }
    uint32_t w = cj->words;
    if (cj->stamp != m->eseq) {
        cj->stamp = m->eseq;
        cj->nfired = 0;
        cj->flags = 0;
        cj->occ_head = 0;
        if (w == 1) {
            cj->bits[0] = 0;
            cj->bits[1] = 0;
        } else {
            memset(cj->bits, 0, 2 * (size_t)w * sizeof(uint64_t));
        }
    }
    uint64_t bit = 1ull << (ci & 63);
    uint64_t *fired = &cj->bits[ci >> 6];
    if (!(*fired & bit)) {
        *fired |= bit;
        if ((cj->bits[2 * w + (ci >> 6)] & bit) && ++cj->nfired == cj->nreq) {
            if (m->ncands == m->cap_cands && grow_arr(m, (void **)&m->cands, &m->cap_cands,
                                                      sizeof(conj *), (size_t)m->ncands + 1) != 0) {
                m->oom = 1;
            } else {
                m->cands[m->ncands++] = cj;
                cj->flags |= CJ_CANDIDATE;
            }
        }
    }
    if (!m->cur_in_array)
        cj->bits[w + (ci >> 6)] |= bit;
    else
        fire_occ(m, cj, ci);
}

/* An item of anything-but b matched the current leaf. Deferred ones are only noted in the
 * event's exclusion list (without touching b: a cache miss per rule saved). */
static inline void exclude(rules_matcher *m, ab *b, uint32_t deferred)
{
    if (!deferred) {
        b->stamp = m->vseq;
        return;
    }
    if (m->nabx == m->cap_abx &&
        grow_arr(m, (void **)&m->abx, &m->cap_abx, sizeof(struct abx), (size_t)m->nabx + 1) != 0) {
        m->oom = 1;
        return;
    }
    struct abx *x = &m->abx[m->nabx++];
    x->vseq = m->vseq;
    x->b = b;
}

static inline void run_acts(rules_matcher *m, const actlist *l, const char *s, size_t n)
{
    for (uint32_t i = 0; i < l->n; i++) {
        const act *a = &l->v[i];
        if (a->wc != NULL && !rules_wildcard_match(&a->wc->wc, s, n))
            continue;
        if (a->excl)
            exclude(m, a->obj, a->cond);
        else
            fire(m, a->obj, a->cond);
    }
}

static inline void probe(rules_matcher *m, const field *f, int kind, const char *k, size_t len,
                         const char *s, size_t n)
{
    kentry *e = key_find(m, f, kind, k, len, key_hash(f, kind, k, len));
    if (e != NULL)
        run_acts(m, &e->acts, s, n);
}

static int ensure_buf(rules_matcher *m, char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    char *b = mem_realloc(&m->acct, *buf, *cap, c);
    if (b == NULL)
        return EVBUS_ENOMEM;
    *buf = b;
    *cap = c;
    return 0;
}

/*
 * The probes of a string leaf, in one fixed order: exact; each prefix length; each suffix
 * length; then on the case-folded copy t: equals-ignore-case, prefix and suffix lengths.
 * With `hs`, the hashes come from there (computed, and their slots prefetched, while the
 * scan went on); otherwise they are computed here.
 */
#define STRING_PROBES(X, f, s, t, n)                                                               \
    do {                                                                                           \
        const lenset *ls_;                                                                         \
        if ((f)->nkeys[K_STR])                                                                     \
            X(K_STR, (s), (n));                                                                    \
        ls_ = &(f)->lens[K_PREFIX - K_FIRST_LEN];                                                  \
        for (uint32_t i_ = 0; i_ < ls_->n && ls_->v[i_].len <= (n); i_++)                          \
            X(K_PREFIX, (s), ls_->v[i_].len);                                                      \
        ls_ = &(f)->lens[K_SUFFIX - K_FIRST_LEN];                                                  \
        for (uint32_t i_ = 0; i_ < ls_->n && ls_->v[i_].len <= (n); i_++)                          \
            X(K_SUFFIX, (s) + (n)-ls_->v[i_].len, ls_->v[i_].len);                                 \
        if ((f)->ic_keys > 0) {                                                                    \
            if ((f)->nkeys[K_EQIC])                                                                \
                X(K_EQIC, (t), (n));                                                               \
            ls_ = &(f)->lens[K_PREFIX_IC - K_FIRST_LEN];                                           \
            for (uint32_t i_ = 0; i_ < ls_->n && ls_->v[i_].len <= (n); i_++)                      \
                X(K_PREFIX_IC, (t), ls_->v[i_].len);                                               \
            ls_ = &(f)->lens[K_SUFFIX_IC - K_FIRST_LEN];                                           \
            for (uint32_t i_ = 0; i_ < ls_->n && ls_->v[i_].len <= (n); i_++)                      \
                X(K_SUFFIX_IC, (t) + (n)-ls_->v[i_].len, ls_->v[i_].len);                          \
        }                                                                                          \
    } while (0)

static void string_leaf(rules_matcher *m, const field *f, const char *s, size_t n, const char *t,
                        const uint64_t *hs)
{
    if (f->ic_keys > 0 && t == NULL) {
        if (ensure_buf(m, &m->fbuf, &m->cap_fbuf, n) != 0) {
            m->oom = 1;
            return;
        }
        rules_casefold(s, n, m->fbuf);
        t = m->fbuf;
    }
#define PROBE_(kind, k, len)                                                                       \
    do {                                                                                           \
        uint64_t h_ = hs != NULL ? *hs++ : key_hash(f, (kind), (k), (len));                        \
        kentry *e_ = key_find(m, f, (kind), (k), (len), h_);                                       \
        if (e_ != NULL)                                                                            \
            run_acts(m, &e_->acts, s, n);                                                          \
    } while (0)
    STRING_PROBES(PROBE_, f, s, t, n);
#undef PROBE_
    if (f->wild_any.n > 0)
        run_acts(m, &f->wild_any, s, n);
    if (f->nkeys[K_CIDR4] || f->nkeys[K_CIDR6]) {
        uint8_t addr[16], k[17];
        int fam = rules_parse_ip(s, n, addr);
        if (fam != 0) {
            int kind = fam == 4 ? K_CIDR4 : K_CIDR6;
            const lenset *ls = &f->lens[kind - K_FIRST_LEN];
            for (uint32_t i = 0; i < ls->n; i++) {
                cidr_key(fam, ls->v[i].len, addr, k);
                probe(m, f, kind, (const char *)k, fam == 4 ? 5 : 17, s, n);
            }
        }
    }
}

static void stab(rules_matcher *m, const rnode *n, uint64_t x)
{
    for (uint32_t depth = 0; n != NULL && depth < 16; depth++) {
        const rslot *sl = rnode_slot(n, digit_at(x, depth));
        if (sl == NULL)
            return;
        for (uint32_t i = 0; i < sl->cover.n; i++)
            fire(m, sl->cover.v[i].obj, sl->cover.v[i].cond);
        for (uint32_t i = 0; i < sl->lo.n && sl->lo.v[i].bound <= x; i++)
            fire(m, sl->lo.v[i].a.obj, sl->lo.v[i].a.cond);
        for (uint32_t i = 0; i < sl->hi.n && sl->hi.v[i].bound >= x; i++)
            fire(m, sl->hi.v[i].a.obj, sl->hi.v[i].a.cond);
        n = sl->child;
    }
}

/* Scanner callback: records the leaf (and its array context when a condition will need it)
 * and prefetches the exact-string probe. */
static void on_leaf(void *ud, scan *s, const scan_node *node, const scan_value *v)
{
    rules_matcher *m = ud;
    field *f = node->leaf;
    if (m->nlv == m->cap_lv &&
        grow_arr(m, (void **)&m->lv, &m->cap_lv, sizeof(struct leafrec), (size_t)m->nlv + 1) != 0) {
        m->oom = 1;
        return;
    }
    struct leafrec *r = &m->lv[m->nlv++];
    r->f = f;
    r->s = v->s;
    r->len = v->len;
    r->type = (uint8_t)v->type;
    r->escaped = (uint8_t)v->escaped;
    r->in_array = (uint8_t)scan_in_array(s);
    r->ctx = 0;
    r->has_h = 0;
    if (r->in_array && f->ctx_users > 0) {
        r->ctx = scan_leaf_ctx(s);
        if (r->ctx == UINT32_MAX) {
            m->oom = 1;
            r->ctx = 0;
        }
    }
    if (v->type == SCAN_STRING && !v->escaped && m->keys.s != NULL) {
        /* Compute the probes' hashes now and prefetch their slots: the cache misses overlap
         * the rest of the scan instead of stalling the lookups afterwards. */
        const char *t = NULL;
        size_t n = v->len;
        if (f->ic_keys > 0) {
            /* +1: never leave fold NULL, even for an empty string (NULL + 0 is undefined). */
            if (m->nfold + n + 1 > m->cap_fold &&
                grow_arr(m, (void **)&m->fold, &m->cap_fold, 1, (size_t)m->nfold + n + 1) != 0) {
                m->oom = 1;
                return;
            }
            r->foff = m->nfold;
            rules_casefold(v->s, n, m->fold + m->nfold);
            m->nfold += (uint32_t)n;
            t = m->fold + r->foff;
        }
        r->hoff = m->nph;
#define PLAN_(kind, k, len)                                                                        \
    do {                                                                                           \
        if (m->nph == m->cap_ph &&                                                                 \
            grow_arr(m, (void **)&m->ph, &m->cap_ph, sizeof(uint64_t), (size_t)m->nph + 1) != 0) { \
            m->oom = 1;                                                                            \
            return;                                                                                \
        }                                                                                          \
        uint64_t h_ = key_hash(f, (kind), (k), (len));                                             \
        __builtin_prefetch(&m->keys.s[h_ & m->keys.mask]);                                         \
        m->ph[m->nph++] = h_;                                                                      \
    } while (0)
        STRING_PROBES(PLAN_, f, v->s, t, n);
#undef PLAN_
        r->has_h = 1;
    }
}

static void leaf_process(rules_matcher *m, const struct leafrec *r)
{
    field *f = r->f;
    m->vseq++;
    m->cur_in_array = r->in_array;
    m->cur_ctx = r->ctx;
    if ((f->absent_refs > 0 || f->dab_refs > 0) && f->ev_stamp != m->eseq) {
        f->ev_stamp = m->eseq;
        f->ev_root = 0;
        f->ev_head = 0;
        f->ev_dhead = 0;
    }
    if (f->dab_refs > 0) {
        if (m->ndleaf == m->cap_dleaf &&
            grow_arr(m, (void **)&m->dleaf, &m->cap_dleaf, sizeof(struct dleaf),
                     (size_t)m->ndleaf + 1) != 0) {
            m->oom = 1;
        } else {
            struct dleaf *d = &m->dleaf[m->ndleaf++];
            d->vseq = m->vseq;
            d->ctx = r->ctx;
            d->in_array = r->in_array;
            d->next = f->ev_dhead;
            f->ev_dhead = m->ndleaf;
        }
    }
    if (f->absent_refs > 0) {
        if (!r->in_array) {
            f->ev_root = 1;
        } else if (m->nlrec == m->cap_lrec &&
                   grow_arr(m, (void **)&m->lrec, &m->cap_lrec, sizeof(struct lrec),
                            (size_t)m->nlrec + 1) != 0) {
            m->oom = 1;
        } else {
            struct lrec *l = &m->lrec[m->nlrec++];
            l->ctx = r->ctx;
            l->next = f->ev_head;
            f->ev_head = m->nlrec;
        }
    }
    switch (r->type) {
    case SCAN_STRING:
        if (r->escaped) {
            if (ensure_buf(m, &m->sbuf, &m->cap_sbuf, r->len) != 0) {
                m->oom = 1;
                return;
            }
            size_t n = scan_unescape(r->s, r->len, m->sbuf);
            string_leaf(m, f, m->sbuf, n, NULL, NULL);
        } else if (r->has_h) {
            string_leaf(m, f, r->s, r->len, f->ic_keys > 0 ? m->fold + r->foff : NULL,
                        m->ph ? m->ph + r->hoff : NULL);
        } else {
            string_leaf(m, f, r->s, r->len, NULL, NULL);
        }
        break;
    case SCAN_NUMBER:
        if (f->nkeys[K_NUM] || f->ranges != NULL) {
            uint64_t k = num_key(parse_number(r->s, r->len));
            if (f->nkeys[K_NUM])
                probe(m, f, K_NUM, (const char *)&k, 8, NULL, 0);
            stab(m, f->ranges, k);
        }
        break;
    case SCAN_TRUE: run_acts(m, &f->is_true, NULL, 0); break;
    case SCAN_FALSE: run_acts(m, &f->is_false, NULL, 0); break;
    case SCAN_NULL: run_acts(m, &f->is_null, NULL, 0); break;
    default: break;
    }
    if (f->exists.n > 0)
        run_acts(m, &f->exists, NULL, 0);
    for (uint32_t i = 0; i < f->nab; i++) {
        ab *b = f->abs[i];
        if (b->stamp != m->vseq)
            fire(m, b->conj, b->cond);
    }
}

/* ------------------------------------------------------------ resolution */

static inline int bit_get(const uint64_t *bits, uint32_t i)
{
    return (int)((bits[i >> 6] >> (i & 63)) & 1);
}

/* 1 when no leaf at field f is consistent with the chosen contexts. */
static int absent_holds(rules_matcher *m, const field *f, const uint32_t *chosen, uint32_t nchosen)
{
    if (f->ev_stamp != m->eseq)
        return 1;
    if (f->ev_root)
        return 0;
    const scan *s = &m->scanner;
    for (uint32_t l = f->ev_head; l != 0; l = m->lrec[l - 1].next) {
        uint32_t ctx = m->lrec[l - 1].ctx;
        int ok = 1;
        for (uint32_t k = 0; k < nchosen && ok; k++)
            ok = scan_consistent(s, ctx, chosen[k]);
        if (ok)
            return 0;
    }
    return 1;
}

struct bt {
    rules_matcher *m;
    const conj *cj;
    const uint64_t *root;
    uint32_t *chosen;
    uint32_t nchosen;
    uint32_t *later_absent; /* per condition: exists:false conditions after it */
    const uint64_t *rel;    /* per condition ci: arrays that conditions ci.. can meet */
    uint32_t rwords;
};

/*
 * Failed search states, as the reference remembers them: the outcome of bt_search(ci)
 * depends only on the (array, index) choices, among the arrays that conditions ci.. can
 * meet, implied by the contexts chosen so far. A key is [ci, n, array, index, ...] sorted by
 * array; keys live in memo_arena and are found by hash through memo_tab (offset + 1).
 */
static uint32_t memo_key(struct bt *b, uint32_t ci)
{
    rules_matcher *m = b->m;
    const scan *s = &m->scanner;
    const uint64_t *rel = b->rel + (size_t)ci * b->rwords;
    uint32_t start = m->nmemo_arena;
    uint32_t need = 2;
    for (uint32_t j = 0; j < b->nchosen; j++)
        need += 2 * s->ctx[b->chosen[j]].depth;
    if (grow_arr(m, (void **)&m->memo_arena, &m->cap_memo_arena, sizeof(uint32_t),
                 (size_t)start + need) != 0) {
        m->oom = 1;
        return UINT32_MAX;
    }
    uint32_t *k = m->memo_arena + start;
    uint32_t np = 0;
    uint32_t *pairs = k + 2;
    for (uint32_t j = 0; j < b->nchosen; j++) {
        for (uint32_t c = b->chosen[j]; c != 0; c = s->ctx[c].parent) {
            uint32_t a = s->ctx[c].array;
            if (!((rel[a >> 6] >> (a & 63)) & 1))
                continue;
            /* insertion by array id, without duplicates (one index per array: consistent) */
            uint32_t i = np;
            while (i > 0 && pairs[2 * (i - 1)] > a)
                i--;
            if (i > 0 && pairs[2 * (i - 1)] == a)
                continue;
            memmove(&pairs[2 * i + 2], &pairs[2 * i], (np - i) * 2 * sizeof(uint32_t));
            pairs[2 * i] = a;
            pairs[2 * i + 1] = s->ctx[c].index;
            np++;
        }
    }
    k[0] = ci;
    k[1] = np;
    return start;
}

static uint64_t memo_hash_at(const rules_matcher *m, uint32_t off)
{
    const uint32_t *k = m->memo_arena + off;
    return mem_hash(k, (2 + 2 * (size_t)k[1]) * sizeof(uint32_t), 0x6d656d6fu);
}

static int memo_same(const rules_matcher *m, uint32_t a, uint32_t b)
{
    const uint32_t *x = m->memo_arena + a, *y = m->memo_arena + b;
    return x[0] == y[0] && x[1] == y[1] && memcmp(x + 2, y + 2, 2 * (size_t)x[1] * 4) == 0;
}

/* 1 when key `off` (just built at the end of the arena) is a known failure. */
static int memo_failed(rules_matcher *m, uint32_t off)
{
    if (m->memo_tab == NULL)
        return 0;
    uint64_t h = memo_hash_at(m, off);
    for (uint32_t i = (uint32_t)h & m->memo_mask;; i = (i + 1) & m->memo_mask) {
        uint32_t slot = m->memo_tab[i];
        if (slot == 0)
            return 0;
        if (memo_same(m, slot - 1, off))
            return 1;
    }
}

static void memo_insert(rules_matcher *m, uint32_t off)
{
    if (m->memo_tab == NULL || (m->nmemo + 1) * 2 > m->memo_mask + 1) {
        uint32_t cap = m->memo_tab == NULL ? 64 : (m->memo_mask + 1) * 2;
        uint32_t *t = mem_calloc(&m->acct, (size_t)cap * sizeof(uint32_t));
        if (t == NULL) {
            m->oom = 1;
            return;
        }
        for (uint32_t i = 0; m->memo_tab != NULL && i <= m->memo_mask; i++) {
            uint32_t slot = m->memo_tab[i];
            if (slot == 0)
                continue;
            uint32_t j = (uint32_t)memo_hash_at(m, slot - 1) & (cap - 1);
            while (t[j] != 0)
                j = (j + 1) & (cap - 1);
            t[j] = slot;
        }
        if (m->memo_tab != NULL)
            mem_free(&m->acct, m->memo_tab, ((size_t)m->memo_mask + 1) * sizeof(uint32_t));
        m->memo_tab = t;
        m->memo_mask = cap - 1;
    }
    uint32_t i = (uint32_t)memo_hash_at(m, off) & m->memo_mask;
    while (m->memo_tab[i] != 0)
        i = (i + 1) & m->memo_mask;
    m->memo_tab[i] = off + 1;
    m->nmemo++;
    const uint32_t *k = m->memo_arena + off;
    m->nmemo_arena = off + 2 + 2 * k[1]; /* keep the key */
}

/* The outermost array context of context c (c != 0). */
static inline uint32_t outer_ctx(const scan *s, uint32_t c)
{
    while (s->ctx[c].parent != 0)
        c = s->ctx[c].parent;
    return c;
}

static int bt_search(struct bt *b, uint32_t ci)
{
    const conj *cj = b->cj;
    if (ci == cj->nconds)
        return 1;
    rules_matcher *m = b->m;
    const mcond *c = &cj->conds[ci];
    uint32_t key = memo_key(b, ci);
    if (key == UINT32_MAX)
        return 0;
    if (memo_failed(m, key))
        return 0;
    if (c->has_absent && absent_holds(m, c->f, b->chosen, b->nchosen) && bt_search(b, ci + 1))
        return 1;
    if (b->root != NULL && bit_get(b->root, ci)) {
        /* A leaf under no array constrains nothing: try it first. When no exists:false
         * follows, nothing else can do better. */
        if (bt_search(b, ci + 1))
            return 1;
        if (b->later_absent[ci] == 0)
            goto failed;
    }
    uint32_t start = m->bt_start[3 * ci], count = m->bt_start[3 * ci + 1];
    uint32_t outer = m->bt_start[3 * ci + 2];
    const scan *s = &m->scanner;
    uint32_t first = 0, last = count;
    if (outer != 0) {
        /* A chosen leaf under element j of that array admits only options of element j. */
        for (uint32_t j = 0; j < b->nchosen; j++) {
            uint32_t oc = outer_ctx(s, b->chosen[j]);
            if (s->ctx[oc].array != outer)
                continue;
            uint32_t want = s->ctx[oc].index;
            uint32_t lo = 0, hi = count;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (s->ctx[outer_ctx(s, m->bt_opt[start + mid])].index < want)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            first = lo;
            last = lo;
            while (last < count && s->ctx[outer_ctx(s, m->bt_opt[start + last])].index == want)
                last++;
            break;
        }
    }
    for (uint32_t k = first; k < last; k++) {
        uint32_t ctx = m->bt_opt[start + k];
        int ok = 1;
        for (uint32_t j = 0; j < b->nchosen && ok; j++)
            ok = scan_consistent(s, ctx, b->chosen[j]);
        if (!ok)
            continue;
        b->chosen[b->nchosen++] = ctx;
        int found = bt_search(b, ci + 1);
        b->nchosen--;
        if (found)
            return 1;
    }
failed:
    /* The arena may have grown past this key (deeper calls): rebuild it at the end. */
    key = memo_key(b, ci);
    if (key != UINT32_MAX)
        memo_insert(m, key);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The reference's depth-first search in condition order over the recorded occurrences. */
static int conj_search(rules_matcher *m, const conj *cj, int fresh)
{
    uint32_t n = cj->nconds;
    if (grow_arr(m, (void **)&m->bt_start, &m->cap_bt_start, sizeof(uint32_t), 3 * (size_t)n) !=
            0 ||
        grow_arr(m, (void **)&m->bt_chosen, &m->cap_bt_chosen, sizeof(uint32_t), 2 * (size_t)n) !=
            0) {
        m->oom = 1;
        return 0;
    }
    /* Count occurrences per condition, then place them (a counting sort by condition). */
    memset(m->bt_start, 0, 3 * (size_t)n * sizeof(uint32_t));
    uint32_t total = 0;
    if (fresh)
        for (uint32_t o = cj->occ_head; o != 0; o = m->occ[o - 1].next, total++)
            m->bt_start[3 * m->occ[o - 1].cond + 1]++;
    if (grow_arr(m, (void **)&m->bt_opt, &m->cap_bt_opt, sizeof(uint32_t), (size_t)total + 1) !=
        0) {
        m->oom = 1;
        return 0;
    }
    for (uint32_t i = 0, at = 0; i < n; i++) {
        m->bt_start[3 * i] = at;
        at += m->bt_start[3 * i + 1];
        m->bt_start[3 * i + 1] = 0;
    }
    if (fresh)
        for (uint32_t o = cj->occ_head; o != 0; o = m->occ[o - 1].next) {
            const struct occ *x = &m->occ[o - 1];
            m->bt_opt[m->bt_start[3 * x->cond] + m->bt_start[3 * x->cond + 1]++] = x->ctx;
        }
    /* Document order, duplicates (several leaves of one element) removed. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t *v = m->bt_opt + m->bt_start[3 * i];
        uint32_t c = m->bt_start[3 * i + 1], k = 0;
        qsort(v, c, sizeof(uint32_t), cmp_u32);
        for (uint32_t j = 0; j < c; j++)
            if (k == 0 || v[k - 1] != v[j])
                v[k++] = v[j];
        m->bt_start[3 * i + 1] = k;
        /* When every option lies in one outermost array, they are grouped by its element
         * (context ids follow document order): bt_search can jump to one element. */
        uint32_t outer = 0;
        for (uint32_t j = 0; j < k; j++) {
            uint32_t a = v[j] == 0 ? 0 : m->scanner.ctx[outer_ctx(&m->scanner, v[j])].array;
            if (j == 0)
                outer = a;
            else if (a != outer)
                outer = 0;
        }
        m->bt_start[3 * i + 2] = outer;
    }
    uint32_t *later = m->bt_chosen + n;
    for (uint32_t i = n, acc = 0; i-- > 0;) {
        later[i] = acc;
        acc += cj->conds[i].has_absent;
    }
    /* rel[ci]: arrays on the chains of the options and absent-check leaves of conditions ci.. */
    const scan *s = &m->scanner;
    uint32_t rwords = (s->next_array + 1 + 63) / 64;
    size_t nrel = ((size_t)n + 1) * rwords;
    if (nrel > UINT32_MAX / 2 ||
        grow_arr(m, (void **)&m->bt_rel, &m->cap_bt_rel, sizeof(uint64_t), nrel) != 0) {
        m->oom = 1;
        return 0;
    }
    memset(m->bt_rel, 0, nrel * sizeof(uint64_t));
    for (uint32_t i = n; i-- > 0;) {
        uint64_t *r = m->bt_rel + (size_t)i * rwords;
        memcpy(r, r + rwords, rwords * sizeof(uint64_t));
        uint32_t start = m->bt_start[3 * i], count = m->bt_start[3 * i + 1];
        for (uint32_t k = 0; k < count; k++)
            for (uint32_t c = m->bt_opt[start + k]; c != 0; c = s->ctx[c].parent)
                r[s->ctx[c].array >> 6] |= 1ull << (s->ctx[c].array & 63);
        const field *f = cj->conds[i].f;
        if (cj->conds[i].has_absent && f->ev_stamp == m->eseq)
            for (uint32_t l = f->ev_head; l != 0; l = m->lrec[l - 1].next)
                for (uint32_t c = m->lrec[l - 1].ctx; c != 0; c = s->ctx[c].parent)
                    r[s->ctx[c].array >> 6] |= 1ull << (s->ctx[c].array & 63);
    }
    m->nmemo_arena = 0;
    m->nmemo = 0;
    if (m->memo_tab != NULL)
        memset(m->memo_tab, 0, ((size_t)m->memo_mask + 1) * sizeof(uint32_t));
    struct bt b = {.m = m,
                   .cj = cj,
                   .root = fresh ? cj->bits + cj->words : NULL,
                   .chosen = m->bt_chosen,
                   .nchosen = 0,
                   .later_absent = later,
                   .rel = m->bt_rel,
                   .rwords = rwords};
    return bt_search(&b, 0);
}

/* Keeps only the maximal sets of fam[0..n) (duplicates and subsets go); returns the count. */
static uint32_t fam_reduce(uint64_t *fam, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t x = fam[i];
        int dominated = 0;
        for (uint32_t j = 0; j < k && !dominated; j++)
            dominated = (fam[j] | x) == fam[j];
        if (dominated)
            continue;
        uint32_t w = 0;
        for (uint32_t j = 0; j < k; j++)
            if ((fam[j] | x) != x)
                fam[w++] = fam[j];
        fam[w++] = x;
        k = w;
    }
    return k;
}

static int fam_reserve(rules_matcher *m, size_t extra)
{
    return grow_arr(m, (void **)&m->dp_fam, &m->cap_dp_fam, sizeof(uint64_t),
                    (size_t)m->ndp_fam + extra);
}

/*
 * Conjunctions without exists:false, up to 64 conditions, with leaves in arrays: is there one
 * leaf per condition, pairwise array-consistent? Bottom-up over the array contexts that hold
 * occurrences: F(ctx) = {direct(ctx)} (x) for each array A under ctx: U_{e in A} F(e), where
 * (x) unions one set from each side and U collects alternatives (elements of one array never
 * combine). Families keep only maximal sets. Returns 1, 0, or -1 when a family grew past
 * DP_MAX_FAMILY (the caller then searches).
 */
static int conj_dp(rules_matcher *m, const conj *cj)
{
    const scan *s = &m->scanner;
    uint64_t need = ~cj->bits[1] & (cj->nconds == 64 ? ~0ull : ((1ull << cj->nconds) - 1));
    uint32_t nctx = s->nctx;
    if (nctx > m->cap_dp_ctx) {
        uint32_t old = m->cap_dp_ctx;
        if (grow_arr(m, (void **)&m->dp_mark, &m->cap_dp_ctx, sizeof(struct dpmark), nctx) != 0) {
            m->oom = 1;
            return 0;
        }
        memset(m->dp_mark + old, 0, (size_t)(m->cap_dp_ctx - old) * sizeof(struct dpmark));
    }
    if (++m->dp_stamp == 0) {
        memset(m->dp_mark, 0, (size_t)m->cap_dp_ctx * sizeof(struct dpmark));
        m->dp_stamp = 1;
    }
    m->ndp_slots = 0;
    m->ndp_groups = 0;
    m->ndp_fam = 0;
    /* Slots for every occurrence context and its ancestors. */
    for (uint32_t o = cj->occ_head; o != 0; o = m->occ[o - 1].next) {
        const struct occ *x = &m->occ[o - 1];
        uint64_t bit = 1ull << x->cond;
        if (!(need & bit))
            continue;
        for (uint32_t c = x->ctx; c != 0; c = s->ctx[c].parent) {
            if (m->dp_mark[c].gen == m->dp_stamp) {
                if (c == x->ctx)
                    m->dp_slots[m->dp_mark[c].slot - 1].direct |= bit;
                break;
            }
            if (grow_arr(m, (void **)&m->dp_slots, &m->cap_dp_slots, sizeof(struct dpslot),
                         (size_t)m->ndp_slots + 1) != 0) {
                m->oom = 1;
                return 0;
            }
            struct dpslot *sl = &m->dp_slots[m->ndp_slots++];
            sl->ctx = c;
            sl->groups = 0;
            sl->direct = c == x->ctx ? bit : 0;
            m->dp_mark[c].gen = m->dp_stamp;
            m->dp_mark[c].slot = m->ndp_slots;
        }
    }
    /* Children have larger context ids than their parents: visit slots by descending id. */
    uint32_t *order = m->bt_opt;
    if (grow_arr(m, (void **)&m->bt_opt, &m->cap_bt_opt, sizeof(uint32_t),
                 (size_t)m->ndp_slots + 1) != 0) {
        m->oom = 1;
        return 0;
    }
    order = m->bt_opt;
    for (uint32_t i = 0; i < m->ndp_slots; i++)
        order[i] = m->dp_slots[i].ctx;
    qsort(order, m->ndp_slots, sizeof(uint32_t), cmp_u32);
    uint32_t root_groups = 0;
    for (uint32_t k = m->ndp_slots; k-- > 0;) {
        uint32_t c = order[k];
        struct dpslot *sl = &m->dp_slots[m->dp_mark[c].slot - 1];
        /* F = {direct} (x) each group's family */
        if (fam_reserve(m, 1) != 0) {
            m->oom = 1;
            return 0;
        }
        uint32_t off = m->ndp_fam, n = 1;
        m->dp_fam[m->ndp_fam++] = sl->direct;
        for (uint32_t g = sl->groups; g != 0; g = m->dp_groups[g - 1].next) {
            const struct dpgroup *gr = &m->dp_groups[g - 1];
            size_t prod = (size_t)n * gr->fam_n;
            if (fam_reserve(m, prod) != 0) {
                m->oom = 1;
                return 0;
            }
            uint32_t noff = m->ndp_fam;
            for (uint32_t i = 0; i < n; i++)
                for (uint32_t j = 0; j < gr->fam_n; j++)
                    m->dp_fam[m->ndp_fam++] = m->dp_fam[off + i] | m->dp_fam[gr->fam_off + j];
            off = noff;
            n = fam_reduce(m->dp_fam + off, (uint32_t)prod);
            m->ndp_fam = off + n;
            if (n > DP_MAX_FAMILY)
                return -1;
        }
        for (uint32_t i = 0; i < n; i++)
            if ((m->dp_fam[off + i] & need) == need)
                return 1;
        /* Union into the parent's group for this array. */
        uint32_t parent = s->ctx[c].parent, array = s->ctx[c].array;
        uint32_t *head =
            parent == 0 ? &root_groups : &m->dp_slots[m->dp_mark[parent].slot - 1].groups;
        struct dpgroup *gr = NULL;
        for (uint32_t g = *head; g != 0; g = m->dp_groups[g - 1].next)
            if (m->dp_groups[g - 1].array == array) {
                gr = &m->dp_groups[g - 1];
                break;
            }
        if (gr == NULL) {
            if (grow_arr(m, (void **)&m->dp_groups, &m->cap_dp_groups, sizeof(struct dpgroup),
                         (size_t)m->ndp_groups + 1) != 0) {
                m->oom = 1;
                return 0;
            }
            gr = &m->dp_groups[m->ndp_groups++];
            gr->array = array;
            gr->fam_off = off;
            gr->fam_n = n;
            gr->next = *head;
            *head = m->ndp_groups;
        } else {
            if (fam_reserve(m, (size_t)gr->fam_n + n) != 0) {
                m->oom = 1;
                return 0;
            }
            uint32_t noff = m->ndp_fam;
            memcpy(m->dp_fam + noff, m->dp_fam + gr->fam_off, gr->fam_n * sizeof(uint64_t));
            memcpy(m->dp_fam + noff + gr->fam_n, m->dp_fam + off, n * sizeof(uint64_t));
            uint32_t k2 = fam_reduce(m->dp_fam + noff, gr->fam_n + n);
            m->ndp_fam = noff + k2;
            gr->fam_off = noff;
            gr->fam_n = k2;
            if (k2 > DP_MAX_FAMILY)
                return -1;
        }
    }
    /* The root: conditions met outside arrays are free; combine the top-level arrays. */
    uint32_t off = m->ndp_fam, n = 1;
    if (fam_reserve(m, 1) != 0) {
        m->oom = 1;
        return 0;
    }
    m->dp_fam[m->ndp_fam++] = 0;
    for (uint32_t g = root_groups; g != 0; g = m->dp_groups[g - 1].next) {
        const struct dpgroup *gr = &m->dp_groups[g - 1];
        size_t prod = (size_t)n * gr->fam_n;
        if (fam_reserve(m, prod) != 0) {
            m->oom = 1;
            return 0;
        }
        uint32_t noff = m->ndp_fam;
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < gr->fam_n; j++)
                m->dp_fam[m->ndp_fam++] = m->dp_fam[off + i] | m->dp_fam[gr->fam_off + j];
        off = noff;
        n = fam_reduce(m->dp_fam + off, (uint32_t)prod);
        m->ndp_fam = off + n;
        if (n > DP_MAX_FAMILY)
            return -1;
    }
    for (uint32_t i = 0; i < n; i++)
        if ((m->dp_fam[off + i] & need) == need)
            return 1;
    return 0;
}

/* 1 when leaf `vseq` is excluded by deferred anything-but b (the event's list is short:
 * one entry per item that matched a leaf). */
static int ab_excludes(const rules_matcher *m, const ab *b, uint64_t vseq)
{
    for (uint32_t x = 0; x < m->nabx; x++)
        if (m->abx[x].b == b && m->abx[x].vseq == vseq)
            return 1;
    return 0;
}

/*
 * Judges the deferred anything-but conditions of a candidate: every leaf of the field that one
 * of the condition's anything-but alts does not exclude satisfies it, recorded as an eager
 * fire would have (root bit, or an occurrence in its array context). Returns 0 when such a
 * condition has no leaf at all: the conjunction fails.
 */
static int ab_resolve(rules_matcher *m, conj *cj)
{
    for (uint32_t i = 0; i < cj->nconds; i++) {
        const mcond *c = &cj->conds[i];
        if (!c->deferred)
            continue;
        const field *f = c->f;
        int any = 0;
        if (f->ev_stamp == m->eseq) {
            for (uint32_t d = f->ev_dhead; d != 0; d = m->dleaf[d - 1].next) {
                const struct dleaf *l = &m->dleaf[d - 1];
                int ok = 0;
                for (uint32_t k = 0; k < c->nregs && !ok; k++)
                    if (c->regs[k].type == REG_AB && !ab_excludes(m, c->regs[k].p, l->vseq))
                        ok = 1;
                if (!ok)
                    continue;
                any = 1;
                m->cur_in_array = (int)l->in_array;
                m->cur_ctx = l->ctx;
                fire(m, cj, i);
            }
        }
        if (!any)
            return 0;
    }
    return 1;
}

static int conj_eval(rules_matcher *m, conj *cj)
{
    int fresh = cj->stamp == m->eseq;
    if (fresh && cj->nfired < cj->nreq)
        return 0;
    if (cj->ndeferred > 0 && (!fresh || !ab_resolve(m, cj)))
        return 0; /* deferral needs another required condition: a candidate is fresh */
    int arrays = fresh && (cj->flags & CJ_ARRAY);
    if (cj->nabsent == 0) {
        if (!arrays)
            return 1;
        const uint64_t *root = cj->bits + cj->words;
        uint32_t covered = 1;
        for (uint32_t i = 0; i < cj->nconds && covered; i++)
            covered = bit_get(root, i);
        if (covered)
            return 1;
        if (cj->nconds <= 64) {
            int r = conj_dp(m, cj);
            if (r >= 0)
                return r;
        }
        return conj_search(m, cj, fresh);
    }
    /* With exists:false: decide at once when no array is involved anywhere. */
    for (uint32_t i = 0; i < cj->nconds && !arrays; i++) {
        const mcond *c = &cj->conds[i];
        if (c->has_absent && c->f->ev_stamp == m->eseq && c->f->ev_head != 0)
            arrays = 1;
    }
    if (!arrays) {
        for (uint32_t i = 0; i < cj->nconds; i++) {
            const mcond *c = &cj->conds[i];
            if (!c->has_absent)
                continue;
            if (fresh && bit_get(cj->bits, i))
                continue; /* a leaf matched one of its other alts */
            if (c->f->ev_stamp == m->eseq)
                return 0; /* the field has a leaf (under no array): not absent */
        }
        return 1;
    }
    return conj_search(m, cj, fresh);
}

/* Sorts the matched ids ascending: nothing to do when already sorted (ids often fire in
 * insertion order), insertion sort for a few, else LSD radix sort over the bytes in which the
 * ids differ; tmp has room for n. */
static void sort_ids(uint64_t *v, uint64_t *tmp, uint32_t n)
{
    uint64_t diff = 0;
    int sorted = 1;
    for (uint32_t i = 1; i < n; i++) {
        diff |= v[i] ^ v[0];
        sorted &= v[i - 1] <= v[i];
    }
    if (sorted)
        return;
    if (n <= 32) {
        for (uint32_t i = 1; i < n; i++) {
            uint64_t x = v[i];
            uint32_t j = i;
            for (; j > 0 && v[j - 1] > x; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    uint64_t *src = v, *dst = tmp;
    for (int b = 0; b < 8; b++) {
        int shift = 8 * b;
        if (((diff >> shift) & 0xff) == 0)
            continue; /* every id has the same byte here */
        uint32_t hist[256] = {0};
        for (uint32_t i = 0; i < n; i++)
            hist[(src[i] >> shift) & 0xff]++;
        uint32_t off = 0;
        for (int k = 0; k < 256; k++) {
            uint32_t c = hist[k];
            hist[k] = off;
            off += c;
        }
        for (uint32_t i = 0; i < n; i++)
            dst[hist[(src[i] >> shift) & 0xff]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != v)
        memcpy(v, src, n * sizeof(uint64_t));
}

int rules_matcher_match(rules_matcher *m, const char *event, size_t len, uint64_t *ids, size_t max,
                        size_t *n, char *err, size_t err_len)
{
    *n = 0;
    if (err != NULL && err_len > 0)
        err[0] = '\0';
    m->eseq++;
    m->nout = 0;
    m->ncands = 0;
    m->nocc = 0;
    m->nlrec = 0;
    m->ndleaf = 0;
    m->nabx = 0;
    m->oom = 0;
    m->nlv = 0;
    m->nph = 0;
    m->nfold = 0;
    int rc = scan_event(&m->scanner, &m->paths, event, len, on_leaf, m, err, err_len);
    if (rc == 0) {
        for (uint32_t i = 0; i < m->nlv; i++)
            leaf_process(m, &m->lv[i]);
        for (uint32_t i = 0; i < m->ncands; i++) {
            conj *cj = m->cands[i];
            if (cj->rule->stamp != m->eseq && conj_eval(m, cj))
                emit(m, cj->rule);
        }
        for (uint32_t i = 0; i < m->nabsent_only; i++) {
            conj *cj = m->absent_only[i];
            if (cj->rule->stamp != m->eseq && conj_eval(m, cj))
                emit(m, cj->rule);
        }
        if (m->oom) {
            rc = EVBUS_ENOMEM;
            if (err != NULL && err_len > 0)
                snprintf(err, err_len, "out of memory while matching");
        }
    }
    if (rc == 0) {
        if (m->nout > 32 && grow_arr(m, (void **)&m->out, &m->cap_out, sizeof(uint64_t),
                                     2 * (size_t)m->nout) != 0) {
            rc = EVBUS_ENOMEM;
            if (err != NULL && err_len > 0)
                snprintf(err, err_len, "out of memory while matching");
        }
    }
    if (rc == 0) {
        if (m->nout > 1)
            sort_ids(m->out, m->out + m->nout, m->nout);
        for (uint32_t i = 0; i < m->nout && i < max; i++)
            ids[i] = m->out[i];
        *n = m->nout;
    }
    /* Invalidate per-event stamps of a failed scan too: the next event starts clean. */
    if (m->cap_occ * sizeof(struct occ) > SCRATCH_KEEP || m->cap_sbuf > SCRATCH_KEEP ||
        m->cap_fbuf > SCRATCH_KEEP || m->cap_lrec * sizeof(struct lrec) > SCRATCH_KEEP ||
        m->cap_lv * sizeof(struct leafrec) > SCRATCH_KEEP || m->cap_fold > SCRATCH_KEEP ||
        m->cap_ph * sizeof(uint64_t) > SCRATCH_KEEP ||
        m->cap_dleaf * sizeof(struct dleaf) > SCRATCH_KEEP ||
        m->cap_abx * sizeof(struct abx) > SCRATCH_KEEP) {
        free_arr(m, (void **)&m->dleaf, &m->cap_dleaf, sizeof(struct dleaf));
        free_arr(m, (void **)&m->abx, &m->cap_abx, sizeof(struct abx));
        free_arr(m, (void **)&m->lv, &m->cap_lv, sizeof(struct leafrec));
        free_arr(m, (void **)&m->ph, &m->cap_ph, sizeof(uint64_t));
        free_arr(m, (void **)&m->fold, &m->cap_fold, 1);
        free_arr(m, (void **)&m->occ, &m->cap_occ, sizeof(struct occ));
        free_arr(m, (void **)&m->lrec, &m->cap_lrec, sizeof(struct lrec));
        mem_free(&m->acct, m->sbuf, m->cap_sbuf);
        m->sbuf = NULL;
        m->cap_sbuf = 0;
        mem_free(&m->acct, m->fbuf, m->cap_fbuf);
        m->fbuf = NULL;
        m->cap_fbuf = 0;
    }
    scan_trim(&m->scanner, SCRATCH_KEEP);
    return rc;
}
