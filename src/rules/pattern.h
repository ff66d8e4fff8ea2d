/*
 * rules/pattern: the internal form of one parsed EventBridge event pattern,
 * shared by the parser and reference evaluator (pattern.c, eval.c) and the
 * compiled matcher (matcher.c). Everything a matcher needs to reproduce the
 * reference semantics is stated here; if code and this comment disagree, the
 * comment is the contract and the code is the bug.
 *
 * Shape (disjunctive normal form):
 *
 *   rules_pattern   = OR of conjs[0..nconjs)            (nconjs >= 1)
 *   rules_conj      = AND of conds[0..nconds)           (nconds >= 1)
 *   rules_cond      = one field path + OR of alts[0..nalts)  (nalts >= 1)
 *   rules_alt       = one tagged matcher (exact value or operator)
 *
 * $or blocks are expanded at parse time: {"a":[1],"$or":[{"b":[2]},{"c":[3]}]}
 * becomes two conjunctions {a,b} and {a,c}. Expansion is a cross product, capped
 * at RULES_MAX_CONJS (beyond it the pattern is rejected with an error).
 *
 * Event model (the same for the evaluator and the matcher; this is
 * event-ruler's flattening):
 *  - The event (a JSON object) is flattened into leaves. A leaf is a string,
 *    number, true, false or null, found by walking objects (keys appended to the
 *    path) and arrays (elements inherit the array's path; arrays nest freely).
 *    Objects, arrays and empty containers are never leaves: `{"a":{}}`,
 *    `{"a":[]}` and `{"a":{"b":1}}` have no leaf at path "a".
 *  - A leaf's path is its keys joined with '.': event {"a":{"b":1}} has a leaf
 *    at "a.b". Pattern paths are joined the same way, and a condition applies to
 *    every leaf whose dotted path is byte-equal to rules_cond.path (so pattern
 *    key "a.b" also matches event {"a":{"b":..}}; event-ruler behaves so).
 *  - Each leaf carries its array membership: for every array enclosing it, the
 *    array's identity and the element index the leaf lies under.
 *
 * Match semantics:
 *  - The pattern matches when some conjunction matches.
 *  - A conjunction matches when there is a choice of one leaf per condition
 *    whose alt set matches it (conditions with exists:false may choose nothing;
 *    see RULES_ALT_EXISTS) such that the chosen leaves are array-consistent: no
 *    two of them lie under the same array at different indexes ("array
 *    consistency", event-ruler's ArrayMembership / ACFinder). Leaves under
 *    different arrays, or under no array, always combine.
 *  - Order matters only for exists:false: conditions are visited in conds[]
 *    order (sorted by path, as event-ruler sorts a rule's field names), and an
 *    exists:false is judged against the leaves chosen for the conditions BEFORE
 *    it (a leaf at its path that is inconsistent with those does not count).
 *  - A condition matches a leaf when any of its alts matches the leaf's value.
 *  - Multiple conditions in one conjunction never share a path (the parser
 *    merges them, see below), and conds are sorted by path (bytewise on
 *    `path`, shorter first on a common prefix).
 *
 * Duplicate paths: as in event-ruler, when one conjunction names the same path
 * twice (a duplicate key, or a path both outside and inside an $or branch), the
 * condition parsed later replaces the earlier one.
 *
 * Numbers: a JSON number in the event or the pattern is a double (strtod of the
 * JSON text). Equality and order are those of doubles (300 == 300.0 == 3e2).
 * Integers beyond 2^53 therefore compare approximately. The full double range is
 * allowed (current event-ruler; older AWS docs state a +-5e9 limit); a pattern or
 * event with a number beyond it (1e400) is rejected as invalid JSON.
 *
 * Strings: compared as the unescaped UTF-8 bytes (NUL allowed; use the lengths).
 * "Ignore case" means equality after rules_casefold() of both sides; the parser
 * stores the folded form of the pattern side in rules_alt.folded.
 */
#ifndef EVBUS_RULES_PATTERN_H
#define EVBUS_RULES_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include "rules/rules.h"

/* Deepest field path a pattern may name (keys containing '.' count one level per part). */
#define RULES_MAX_PATH_LEVELS 32u

/* Expansion cap for $or (conjunctions per pattern). */
#define RULES_MAX_CONJS 256
/*
 * Wildcard complexity limit, checked per condition: the most NFA positions that
 * the condition's wildcard values (plain and inside anything-but) can have active
 * at once past their first '*', over all inputs. Above it the pattern is
 * rejected ("Rule is too complex ..."), as AWS rejects such patterns.
 */
#define RULES_MAX_WILDCARD_COMPLEXITY 10

/* A byte string: `s` is also NUL-terminated (s[len] == 0) but may contain NULs. */
typedef struct rules_str {
    char *s;
    size_t len;
} rules_str;

typedef enum rules_alt_kind {
    /* Exact values. */
    RULES_ALT_STRING = 1, /* leaf is a string byte-equal to `str` */
    RULES_ALT_NUMBER,     /* leaf is a number == `num` (doubles; never matches a string) */
    RULES_ALT_TRUE,       /* leaf is the literal true */
    RULES_ALT_FALSE,      /* leaf is the literal false */
    RULES_ALT_NULL,       /* leaf is the literal null (not "" and not a missing field) */

    /* String operators: match string leaves only (never numbers, booleans, null). */
    RULES_ALT_PREFIX,    /* leaf starts with `str` (str may be "": matches every string) */
    RULES_ALT_PREFIX_IC, /* casefold(leaf) starts with `folded` */
    RULES_ALT_SUFFIX,    /* leaf ends with `str` */
    RULES_ALT_SUFFIX_IC, /* casefold(leaf) ends with `folded` */
    RULES_ALT_EQUALS_IC, /* casefold(leaf) == `folded` */
    RULES_ALT_WILDCARD,  /* leaf matches `wc` (see rules_wildcard) */
    RULES_ALT_CIDR,      /* leaf is an IP address text inside `cidr` (see rules_cidr) */

    /* Number operator: matches number leaves only. */
    RULES_ALT_NUMERIC, /* `range` holds the leaf's value */

    /* Negation: matches a leaf (any type, including null) that none of `ab.items`
     * matches. Like every alt it needs a leaf: it never matches a missing field. */
    RULES_ALT_ANYTHING_BUT,

    /* Existence. exists:true matches any leaf (including null, "" and false).
     * exists:false is special: it does not choose a leaf; the condition holds when
     * there is NO leaf at the path that is array-consistent with the leaves chosen
     * for the conditions before it in conds[] (for a field outside any array,
     * simply: the path has no leaf in the event). When exists:false is listed beside other
     * alts of the same condition, see rules_cond.has_absent. */
    RULES_ALT_EXISTS,
} rules_alt_kind;

/*
 * Wildcard: `text` as written (escapes included). Split at every unescaped '*'
 * into nsegs >= 1 literal segments (escapes removed: "\*" is a literal '*', "\\"
 * a literal '\'): value matches when it equals segs[0] X segs[1] X ... X
 * segs[nsegs-1] for some strings X (each X may be empty). So "a*b" -> {"a","b"},
 * "*a" -> {"","a"}, "*" -> {"",""}, "ab" -> {"ab"} (nsegs == 1: plain equality).
 * Only segs[0] and segs[nsegs-1] can be empty (no consecutive stars). See
 * RULES_MAX_WILDCARD_COMPLEXITY for the complexity limit.
 */
typedef struct rules_wildcard {
    rules_str text;
    rules_str *segs;
    size_t nsegs;
} rules_wildcard;

/*
 * Numeric range over doubles. `has_lo` / `has_hi` say whether a bound is present;
 * `lo_incl` / `hi_incl` whether it is inclusive. "=" x is lo = hi = x, both
 * inclusive. Always lo < hi when both present, except for "=" (lo == hi).
 */
typedef struct rules_range {
    double lo, hi;
    uint8_t has_lo, lo_incl, has_hi, hi_incl;
} rules_range;

/*
 * CIDR block. family 4: addr[0..4) holds the network in network byte order, bits
 * 0..32; family 6: addr[0..16), bits 0..128. Host bits are zero (the parser masks
 * "10.0.0.7/24" to 10.0.0.0/24). A string leaf matches when rules_parse_ip()
 * accepts it as an address of the same family whose first `bits` bits equal the
 * network's. An IPv4 leaf never matches an IPv6 block and vice versa; numbers and
 * other non-strings never match. Written CIDRs have bits 0..31 / 0..127 (AWS
 * rejects /32 and /128). A bare string in a pattern that is an IP address literal
 * (e.g. ["10.0.0.1"], ["::1"]) becomes a CIDR alt with bits 32 / 128 (str keeps
 * the text), as event-ruler turns IP literals into single-address ranges: so
 * ["::1"] also matches "0:0:0:0:0:0:0:1".
 */
typedef struct rules_cidr {
    uint8_t addr[16];
    uint8_t bits;
    uint8_t family; /* 4 or 6 */
} rules_cidr;

typedef struct rules_alt rules_alt;

/*
 * anything-but: `items` (nitems >= 1) all have the same kind, one of
 * RULES_ALT_STRING (a string or a list of strings), RULES_ALT_NUMBER (a number or
 * a list of numbers), RULES_ALT_PREFIX, RULES_ALT_SUFFIX, RULES_ALT_EQUALS_IC,
 * RULES_ALT_WILDCARD (a single value or a list, as the pattern wrote it). The
 * anything-but alt matches a leaf when no item matches it by that item's own
 * semantics, so a number leaf is never excluded by string items (and a string
 * leaf never by number items); null, true and false are never excluded.
 */
typedef struct rules_anything_but {
    rules_alt *items;
    size_t nitems;
} rules_anything_but;

struct rules_alt {
    rules_alt_kind kind;
    /* STRING, PREFIX, SUFFIX, *_IC, CIDR: the value as written (unescaped JSON
     * string). NUMBER: canonical text of `num` ("%.17g"). WILDCARD: == wc.text.
     * Others: {"", 0}. */
    rules_str str;
    /* PREFIX_IC, SUFFIX_IC, EQUALS_IC: rules_casefold(str). Otherwise {NULL, 0}. */
    rules_str folded;
    double num;            /* NUMBER */
    int exists;            /* EXISTS: 1 for exists:true, 0 for exists:false */
    rules_range range;     /* NUMERIC */
    rules_wildcard wc;     /* WILDCARD */
    rules_cidr cidr;       /* CIDR */
    rules_anything_but ab; /* ANYTHING_BUT */
};

typedef struct rules_cond {
    rules_str path;  /* dotted path, e.g. "detail.state" */
    rules_str *segs; /* the keys as written (a key may itself contain '.') */
    size_t nsegs;    /* >= 1 */
    rules_alt *alts;
    size_t nalts; /* >= 1 */
    /* 1 when some alt is exists:false. Then the condition holds when there is no
     * consistent leaf at the path (see RULES_ALT_EXISTS) OR some consistent leaf
     * matches one of the other alts. */
    uint8_t has_absent;
} rules_cond;

typedef struct rules_conj {
    rules_cond *conds;
    size_t nconds; /* >= 1 */
} rules_conj;

struct rules_pattern {
    rules_conj *conjs;
    size_t nconjs;    /* 1..RULES_MAX_CONJS */
    size_t mem_bytes; /* rules_pattern_memory() */
    void *arena;      /* private to pattern.c: owns everything above */
};

/*
 * Case folding used by every "ignore case" operator, on both the pattern and the
 * event side. Maps ASCII A-Z to a-z and, for 2-byte UTF-8 sequences, the upper
 * case letters of Latin-1, Latin Extended-A, Greek and Cyrillic to their lower
 * case (same byte length); every other byte sequence is copied unchanged. The
 * output is exactly `len` bytes (out may equal in). Deterministic, no locale.
 */
void rules_casefold(const char *in, size_t len, char *out);

/*
 * Parses an IPv4 or IPv6 address text (len bytes, no NUL needed). Returns 4 or
 * 6 and fills addr (4 or 16 bytes, network order), or 0 when it is not an
 * address. IPv4: exactly four dot-separated runs of decimal digits, each value
 * 0..255 (leading zeros allowed, read as decimal). IPv6: only hex digits and
 * ':' with at least one ':', as inet_pton(AF_INET6) accepts it (no embedded
 * dotted quad, no zone). Used for CIDR leaves by the evaluator and the matcher.
 */
int rules_parse_ip(const char *s, size_t len, uint8_t addr[16]);

/* 1 when `addr` (of `family`) lies in block `c`. */
int rules_cidr_contains(const rules_cidr *c, int family, const uint8_t addr[16]);

/* 1 when the string value (len bytes) matches wildcard `wc`. */
int rules_wildcard_match(const rules_wildcard *wc, const char *s, size_t len);

#endif
