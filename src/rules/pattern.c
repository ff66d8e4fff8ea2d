/*
 * rules/pattern: parses and validates one EventBridge event pattern into the
 * DNF form of pattern.h, and the value helpers (case folding, IP addresses,
 * wildcards) shared with the evaluator and the matcher.
 *
 * Pipeline: JSON text -> jansson tree -> a builder (a list of conjunctions,
 * each a list of pointers to finished conditions) -> the final arrays. Every
 * byte of the result lives in one arena owned by the rules_pattern, so freeing
 * is one walk over the arena blocks and rules_pattern_memory() is exact.
 *
 * $or follows event-ruler's JsonRuleCompiler: the conjunctions built so far are
 * copied once per $or branch and each branch's fields are added to its copies
 * (a cross product). A field written into a conjunction that already names the
 * same path replaces it (event-ruler's Map.put). When a pattern is invalid as
 * an $or pattern, it is parsed again with "$or" as an ordinary field name (the
 * legacy compiler event-ruler falls back to); if that fails too, the $or
 * error is reported.
 *
 * Error messages follow event-ruler's wording, prefixed with the dotted path
 * of the field they concern: `"detail.state": Empty arrays are not allowed`.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "evbus/errors.h"
#include "rules/pattern.h"

/* ------------------------------------------------------------------ arena */

typedef struct ar_block {
    struct ar_block *next;
    size_t used;
    size_t cap;
    _Alignas(max_align_t) unsigned char data[];
} ar_block;

typedef struct arena {
    ar_block *head;
    size_t bytes;
} arena;

#define AR_BLOCK_BYTES 4096u

static void *ar_alloc(arena *a, size_t n)
{
    n = (n + 15u) & ~(size_t)15u;
    if (n == 0)
        n = 16;
    if (a->head == NULL || a->head->cap - a->head->used < n) {
        size_t cap = AR_BLOCK_BYTES - sizeof(ar_block);
        if (n > cap)
            cap = n;
        ar_block *b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->bytes += sizeof(*b) + cap;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void ar_free(arena *a)
{
    if (a == NULL)
        return;
    ar_block *b = a->head;
    while (b != NULL) {
        ar_block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

static int ar_str(arena *a, const char *s, size_t len, rules_str *out)
{
    char *p = ar_alloc(a, len + 1);
    if (p == NULL)
        return EVBUS_ENOMEM;
    if (len > 0)
        memcpy(p, s, len);
    p[len] = 0;
    out->s = p;
    out->len = len;
    return 0;
}

/* ---------------------------------------------------------- value helpers */

/* Lower case of a code point below U+0800 (so both encode in at most 2 bytes). */
static unsigned fold_cp(unsigned cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 0x20;
    if (cp < 0xC0)
        return cp;
    if (cp <= 0xDE)
        return cp == 0xD7 ? cp : cp + 0x20;
    if (cp >= 0x100 && cp <= 0x12F)
        return cp | 1u;
    if (cp >= 0x132 && cp <= 0x137)
        return cp | 1u;
    if (cp >= 0x139 && cp <= 0x148)
        return (cp & 1u) ? cp + 1 : cp;
    if (cp >= 0x14A && cp <= 0x177)
        return cp | 1u;
    if (cp == 0x178)
        return 0xFF;
    if (cp >= 0x179 && cp <= 0x17E)
        return (cp & 1u) ? cp + 1 : cp;
    if ((cp >= 0x200 && cp <= 0x21F) || (cp >= 0x222 && cp <= 0x233))
        return cp | 1u;
    if (cp == 0x386)
        return 0x3AC;
    if (cp >= 0x388 && cp <= 0x38A)
        return cp + 0x25;
    if (cp == 0x38C)
        return 0x3CC;
    if (cp == 0x38E || cp == 0x38F)
        return cp + 0x3F;
    if ((cp >= 0x391 && cp <= 0x3A1) || (cp >= 0x3A3 && cp <= 0x3AB))
        return cp + 0x20;
    if (cp >= 0x400 && cp <= 0x40F)
        return cp + 0x50;
    if (cp >= 0x410 && cp <= 0x42F)
        return cp + 0x20;
    if ((cp >= 0x460 && cp <= 0x481) || (cp >= 0x48A && cp <= 0x4BF))
        return cp | 1u;
    if (cp == 0x4C0)
        return 0x4CF;
    if (cp >= 0x4C1 && cp <= 0x4CE)
        return (cp & 1u) ? cp + 1 : cp;
    if (cp >= 0x4D0 && cp <= 0x52F)
        return cp | 1u;
    if (cp >= 0x531 && cp <= 0x556)
        return cp + 0x30;
    return cp;
}

void rules_casefold(const char *in, size_t len, char *out)
{
    const unsigned char *s = (const unsigned char *)in;
    unsigned char *d = (unsigned char *)out;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            d[i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 0x20) : c;
            i++;
        } else if (c >= 0xC2 && c <= 0xDF && i + 1 < len && (s[i + 1] & 0xC0) == 0x80) {
            unsigned cp = ((unsigned)(c & 0x1F) << 6) | (s[i + 1] & 0x3Fu);
            unsigned f = fold_cp(cp);
            d[i] = (unsigned char)(0xC0 | (f >> 6));
            d[i + 1] = (unsigned char)(0x80 | (f & 0x3F));
            i += 2;
        } else {
            d[i] = c;
            i++;
        }
    }
}

/* event-ruler's IPv4 and IPv6 "looks like an address" regexes. */
static int looks_ipv4(const char *s, size_t len)
{
    int dots = 0;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            run++;
        } else if (s[i] == '.') {
            if (run == 0)
                return 0;
            dots++;
            run = 0;
        } else {
            return 0;
        }
    }
    return dots == 3 && run > 0;
}

static int looks_ipv6(const char *s, size_t len)
{
    int colon = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ':')
            colon = 1;
        else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return colon;
}

int rules_parse_ip(const char *s, size_t len, uint8_t addr[16])
{
    if (looks_ipv4(s, len)) {
        unsigned part = 0;
        int k = 0;
        for (size_t i = 0; i <= len; i++) {
            if (i == len || s[i] == '.') {
                addr[k++] = (uint8_t)part;
                part = 0;
            } else {
                part = part * 10 + (unsigned)(s[i] - '0');
                if (part > 255)
                    return 0;
            }
        }
        return 4;
    }
    if (looks_ipv6(s, len) && len < 64) {
        char buf[64];
        memcpy(buf, s, len);
        buf[len] = 0;
        if (inet_pton(AF_INET6, buf, addr) == 1)
            return 6;
    }
    return 0;
}

int rules_cidr_contains(const rules_cidr *c, int family, const uint8_t addr[16])
{
    if (family != c->family)
        return 0;
    unsigned bits = c->bits;
    size_t full = bits / 8;
    if (memcmp(addr, c->addr, full) != 0)
        return 0;
    unsigned rest = bits % 8;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (addr[full] & mask) == c->addr[full];
}

/* First occurrence of needle in hay at or after *pos; updates *pos past it. */
static int find_from(const char *hay, size_t hay_len, size_t *pos, const rules_str *needle)
{
    if (needle->len == 0)
        return 1;
    if (hay_len < needle->len)
        return 0;
    for (size_t i = *pos; i + needle->len <= hay_len; i++) {
        if (memcmp(hay + i, needle->s, needle->len) == 0) {
            *pos = i + needle->len;
            return 1;
        }
    }
    return 0;
}

int rules_wildcard_match(const rules_wildcard *wc, const char *s, size_t len)
{
    const rules_str *first = &wc->segs[0];
    if (wc->nsegs == 1)
        return len == first->len && memcmp(s, first->s, len) == 0;
    const rules_str *last = &wc->segs[wc->nsegs - 1];
    if (len < first->len + last->len)
        return 0;
    if (memcmp(s, first->s, first->len) != 0)
        return 0;
    if (memcmp(s + len - last->len, last->s, last->len) != 0)
        return 0;
    /* Leftmost placement of each middle segment is optimal for '*'-only globs. */
    size_t pos = first->len;
    size_t end = len - last->len;
    for (size_t i = 1; i + 1 < wc->nsegs; i++) {
        if (!find_from(s, end, &pos, &wc->segs[i]))
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- builder */

typedef struct bconj {
    const rules_cond **f;
    size_t n, cap;
} bconj;

typedef struct blist {
    bconj *v;
    size_t n, cap;
} blist;

static void blist_clear(blist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].f);
    l->n = 0;
}

static void blist_free(blist *l)
{
    blist_clear(l);
    free(l->v);
    l->v = NULL;
    l->cap = 0;
}

static int blist_push(blist *l, const bconj *src)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        bconj *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return EVBUS_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    bconj *c = &l->v[l->n];
    c->n = 0;
    c->cap = 0;
    c->f = NULL;
    if (src != NULL && src->n > 0) {
        c->f = malloc(src->n * sizeof(*c->f));
        if (c->f == NULL)
            return EVBUS_ENOMEM;
        memcpy(c->f, src->f, src->n * sizeof(*c->f));
        c->n = src->n;
        c->cap = src->n;
    }
    l->n++;
    return 0;
}

static int bconj_put(bconj *c, const rules_cond *cond)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->f[i]->path.len == cond->path.len &&
            memcmp(c->f[i]->path.s, cond->path.s, cond->path.len) == 0) {
            c->f[i] = cond;
            return 0;
        }
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        const rules_cond **f = realloc(c->f, cap * sizeof(*f));
        if (f == NULL)
            return EVBUS_ENOMEM;
        c->f = f;
        c->cap = cap;
    }
    c->f[c->n++] = cond;
    return 0;
}

/* ----------------------------------------------------------------- parser */

typedef struct pctx {
    arena *ar;
    int or_mode; /* 1: "$or" is the OR operator; 0: an ordinary field name */
    rules_str *path;
    size_t depth, path_cap;
    char *err;
    size_t err_len;
} pctx;

static const char *const OR_RESERVED[] = {
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
};

static const char COMPLEXITY_MSG[] = "Rule is too complex - try using fewer wildcard characters or "
                                     "fewer repeating character sequences after a wildcard "
                                     "character";

static int key_is(const char *key, size_t klen, const char *word)
{
    return strlen(word) == klen && memcmp(key, word, klen) == 0;
}

/* Dotted path of the current field into buf (truncated with "..." when long). */
static void path_text(const pctx *c, char *buf, size_t buf_len)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < c->depth; i++) {
        const rules_str *s = &c->path[i];
        for (size_t j = (i > 0 ? 0 : 1); j <= s->len; j++) {
            char ch = (j == 0) ? '.' : s->s[j - 1];
            if (n + 4 >= buf_len) {
                if (buf_len >= 4)
                    memcpy(buf + buf_len - 4, "...", 4);
                return;
            }
            buf[n++] = ch ? ch : '?';
        }
    }
    buf[n] = 0;
}

static int perr(pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(pctx *c, const char *fmt, ...)
{
    if (c->err == NULL || c->err_len == 0)
        return EVBUS_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->err_len, fmt, ap);
    va_end(ap);
    return EVBUS_EINVAL;
}

/* Error about the current field: `"a.b": message`. */
static int ferr(pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ferr(pctx *c, const char *fmt, ...)
{
    if (c->err == NULL || c->err_len == 0)
        return EVBUS_EINVAL;
    char path[256];
    char msg[512];
    path_text(c, path, sizeof(path));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->depth > 0)
        snprintf(c->err, c->err_len, "\"%s\": %s", path, msg);
    else
        snprintf(c->err, c->err_len, "%s", msg);
    return EVBUS_EINVAL;
}

static int path_push(pctx *c, const char *key, size_t klen)
{
    if (c->depth == c->path_cap) {
        size_t cap = c->path_cap ? c->path_cap * 2 : 8;
        rules_str *p = realloc(c->path, cap * sizeof(*p));
        if (p == NULL)
            return EVBUS_ENOMEM;
        c->path = p;
        c->path_cap = cap;
    }
    c->path[c->depth].s = (char *)key;
    c->path[c->depth].len = klen;
    c->depth++;
    return 0;
}

/* Jackson's getText() of a token, for messages. */
static void elem_text(const json_t *v, char *buf, size_t len)
{
    if (v == NULL)
        snprintf(buf, len, "]");
    else if (json_is_string(v))
        snprintf(buf, len, "%.*s", (int)(json_string_length(v) > 200 ? 200 : json_string_length(v)),
                 json_string_value(v));
    else if (json_is_number(v))
        snprintf(buf, len, "%.17g", json_number_value(v));
    else if (json_is_true(v))
        snprintf(buf, len, "true");
    else if (json_is_false(v))
        snprintf(buf, len, "false");
    else if (json_is_null(v))
        snprintf(buf, len, "null");
    else if (json_is_array(v))
        snprintf(buf, len, "[");
    else
        snprintf(buf, len, "{");
}

static int set_str(pctx *c, rules_alt *a, rules_alt_kind kind, const json_t *v)
{
    a->kind = kind;
    int rc = ar_str(c->ar, json_string_value(v), json_string_length(v), &a->str);
    if (rc != 0)
        return rc;
    if (kind == RULES_ALT_PREFIX_IC || kind == RULES_ALT_SUFFIX_IC || kind == RULES_ALT_EQUALS_IC) {
        rc = ar_str(c->ar, a->str.s, a->str.len, &a->folded);
        if (rc != 0)
            return rc;
        rules_casefold(a->folded.s, a->folded.len, a->folded.s);
    }
    return 0;
}

static int set_number(pctx *c, rules_alt *a, double x)
{
    char buf[40];
    int n = snprintf(buf, sizeof(buf), "%.17g", x);
    a->kind = RULES_ALT_NUMBER;
    a->num = x;
    return ar_str(c->ar, buf, (size_t)n, &a->str);
}

/* Validates and splits a wildcard value (event-ruler's WildcardParser; its
 * positions count the opening quote, so byte i of the value is "pos i+1"). */
static int set_wildcard(pctx *c, rules_alt *a, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    size_t nsegs = 1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '*') {
            if (i + 1 < len && s[i + 1] == '*')
                return ferr(c, "Consecutive wildcard characters at pos %zu", i + 1);
            nsegs++;
        } else if (s[i] == '\\') {
            if (i + 1 < len && (s[i + 1] == '*' || s[i + 1] == '\\')) {
                i++;
                continue;
            }
            return ferr(c, "Invalid escape character at pos %zu", i + 1);
        }
    }
    a->kind = RULES_ALT_WILDCARD;
    int rc = ar_str(c->ar, s, len, &a->str);
    if (rc != 0)
        return rc;
    a->wc.text = a->str;
    a->wc.segs = ar_alloc(c->ar, nsegs * sizeof(rules_str));
    char *buf = ar_alloc(c->ar, len + nsegs);
    if (a->wc.segs == NULL || buf == NULL)
        return EVBUS_ENOMEM;
    a->wc.nsegs = nsegs;
    size_t k = 0;
    char *start = buf;
    char *d = buf;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '*') {
            a->wc.segs[k].s = start;
            a->wc.segs[k].len = (size_t)(d - start);
            *d++ = 0;
            start = d;
            k++;
        } else if (s[i] == '\\') {
            *d++ = s[++i];
        } else {
            *d++ = s[i];
        }
    }
    a->wc.segs[k].s = start;
    a->wc.segs[k].len = (size_t)(d - start);
    *d = 0;
    return 0;
}

static int parse_cidr(pctx *c, rules_alt *a, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    const char *slash = NULL;
    int nslash = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '/') {
            nslash++;
            slash = s + i;
        }
    }
    if (nslash != 1 || slash == s || slash + 1 == s + len)
        return ferr(c, "Malformed CIDR, one '/' required");
    const char *m = slash + 1;
    size_t mlen = (size_t)(s + len - m);
    int neg = 0;
    size_t i = 0;
    if (m[0] == '-' || m[0] == '+') {
        neg = m[0] == '-';
        i = 1;
    }
    if (i == mlen || mlen - i > 10)
        return ferr(c, "Malformed CIDR, mask bits must be an integer");
    long long bits = 0;
    for (; i < mlen; i++) {
        if (m[i] < '0' || m[i] > '9')
            return ferr(c, "Malformed CIDR, mask bits must be an integer");
        bits = bits * 10 + (m[i] - '0');
    }
    if (bits > 2147483647LL)
        return ferr(c, "Malformed CIDR, mask bits must be an integer");
    if (neg && bits > 0)
        return ferr(c, "Malformed CIDR, mask bits must not be negative");
    size_t iplen = (size_t)(slash - s);
    uint8_t addr[16] = {0};
    int fam = rules_parse_ip(s, iplen, addr);
    if (fam == 0) {
        if (looks_ipv4(s, iplen) || looks_ipv6(s, iplen))
            return ferr(c, "Invalid IP address: %.*s", (int)(iplen > 100 ? 100 : iplen), s);
        return ferr(c, "Nonstandard IP address: %.*s", (int)(iplen > 100 ? 100 : iplen), s);
    }
    if (fam == 4 && bits > 31)
        return ferr(c, "IPv4 mask bits must be < 32");
    if (fam == 6 && bits > 127)
        return ferr(c, "IPv6 mask bits must be < 128");
    a->kind = RULES_ALT_CIDR;
    a->cidr.family = (uint8_t)fam;
    a->cidr.bits = (uint8_t)bits;
    size_t nbytes = fam == 4 ? 4 : 16;
    for (size_t b = 0; b < nbytes; b++) {
        long long keep = bits - (long long)(b * 8);
        uint8_t mask = keep >= 8 ? 0xFF : keep <= 0 ? 0 : (uint8_t)(0xFFu << (8 - keep));
        a->cidr.addr[b] = addr[b] & mask;
    }
    return ar_str(c->ar, s, len, &a->str);
}

static int alloc_items(pctx *c, rules_alt *a, size_t n)
{
    a->kind = RULES_ALT_ANYTHING_BUT;
    a->ab.items = ar_alloc(c->ar, (n ? n : 1) * sizeof(rules_alt));
    if (a->ab.items == NULL)
        return EVBUS_ENOMEM;
    a->ab.nitems = n;
    return 0;
}

static int parse_anything_but(pctx *c, rules_alt *a, json_t *val, size_t outer_keys)
{
    rules_alt_kind sub = 0; /* 0: plain strings / numbers */
    size_t inner_keys = 0;
    json_t *inner = val;
    if (json_is_object(val)) {
        void *it = json_object_iter(val);
        if (it == NULL)
            return ferr(c, "Anything-But expression name not found");
        const char *k = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        if (key_is(k, klen, "equals-ignore-case"))
            sub = RULES_ALT_EQUALS_IC;
        else if (key_is(k, klen, "prefix"))
            sub = RULES_ALT_PREFIX;
        else if (key_is(k, klen, "suffix"))
            sub = RULES_ALT_SUFFIX;
        else if (key_is(k, klen, "wildcard"))
            sub = RULES_ALT_WILDCARD;
        else
            return ferr(c, "Unsupported anything-but pattern: %s", k);
        inner = json_object_iter_value(it);
        inner_keys = json_object_size(val);
    }
    if (!json_is_array(inner) && !json_is_string(inner) && !json_is_number(inner))
        return ferr(c, "Value of anything-but must be an array or single string/number value.");

    size_t n = json_is_array(inner) ? json_array_size(inner) : 1;
    int rc;
    if (sub == 0) {
        int has_num = 0, has_str = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_is_array(inner) ? json_array_get(inner, i) : inner;
            if (json_is_string(e))
                has_str = 1;
            else if (json_is_number(e))
                has_num = 1;
            else
                return ferr(c,
                            json_is_array(inner)
                                ? "Inside anything but list, start|null|boolean is not supported."
                                : "Inside anything-but list, start|null|boolean is not "
                                  "supported.");
        }
        if (has_num == has_str)
            return ferr(c, "Inside anything but list, either all values are number or string, "
                           "mixed type is not supported");
        if ((rc = alloc_items(c, a, n)) != 0)
            return rc;
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_is_array(inner) ? json_array_get(inner, i) : inner;
            rc = has_str ? set_str(c, &a->ab.items[i], RULES_ALT_STRING, e)
                         : set_number(c, &a->ab.items[i], json_number_value(e));
            if (rc != 0)
                return rc;
        }
    } else {
        if (n == 0)
            return ferr(c, "Empty arrays are not allowed");
        if ((rc = alloc_items(c, a, n)) != 0)
            return rc;
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_is_array(inner) ? json_array_get(inner, i) : inner;
            if (!json_is_string(e)) {
                if (sub == RULES_ALT_EQUALS_IC)
                    return ferr(c, "Inside anything-but/equals-ignore-case list, "
                                   "number|start|null|boolean is not supported.");
                if (sub == RULES_ALT_WILDCARD)
                    return ferr(c, "wildcard match pattern must be a string");
                return ferr(c, "prefix/suffix match pattern must be a string");
            }
            if ((sub == RULES_ALT_PREFIX || sub == RULES_ALT_SUFFIX) && json_string_length(e) == 0)
                return ferr(c, "Null prefix/suffix not allowed");
            rc = sub == RULES_ALT_WILDCARD ? set_wildcard(c, &a->ab.items[i], e)
                                           : set_str(c, &a->ab.items[i], sub, e);
            if (rc != 0)
                return rc;
        }
        if (inner_keys > 1)
            return ferr(c, "Too many elements in numeric expression");
    }
    if (outer_keys > 1)
        return ferr(c, "Too many elements in numeric expression");
    return 0;
}

static int is_num(const json_t *v)
{
    return v != NULL && json_is_number(v);
}

static int parse_numeric(pctx *c, rules_alt *a, json_t *val, size_t outer_keys)
{
    char t[256];
    if (!json_is_array(val))
        return ferr(c, "Value of numeric must be an array.");
    size_t n = json_array_size(val);
    json_t *e0 = json_array_get(val, 0);
    if (e0 == NULL || !json_is_string(e0)) {
        elem_text(e0, t, sizeof(t));
        return ferr(c, "Invalid member in numeric match: %s", t);
    }
    const char *op = json_string_value(e0);
    size_t oplen = json_string_length(e0);
    json_t *e1 = json_array_get(val, 1);
    rules_range *r = &a->range;
    a->kind = RULES_ALT_NUMERIC;
    if (key_is(op, oplen, "=")) {
        if (!is_num(e1))
            return ferr(c, "Value of equals must be numeric");
        if (n > 2)
            return ferr(c, "Too many elements in numeric expression");
        r->lo = r->hi = json_number_value(e1);
        r->has_lo = r->has_hi = r->lo_incl = r->hi_incl = 1;
    } else if (key_is(op, oplen, ">=") || key_is(op, oplen, ">")) {
        if (!is_num(e1))
            return ferr(c, "Value of %s must be numeric", op);
        r->lo = json_number_value(e1);
        r->has_lo = 1;
        r->lo_incl = oplen == 2;
        if (n > 2) {
            json_t *e2 = json_array_get(val, 2);
            if (!json_is_string(e2)) {
                elem_text(e2, t, sizeof(t));
                return ferr(c, "Bad value in numeric range: %s", t);
            }
            const char *op2 = json_string_value(e2);
            size_t op2len = json_string_length(e2);
            if (!key_is(op2, op2len, "<") && !key_is(op2, op2len, "<="))
                return ferr(c, "Bad numeric range operator: %s", op2);
            json_t *e3 = json_array_get(val, 3);
            if (!is_num(e3))
                return ferr(c, "Value of %s must be numeric", op2);
            if (n > 4)
                return ferr(c, "Too many terms in numeric range expression");
            r->hi = json_number_value(e3);
            r->has_hi = 1;
            r->hi_incl = op2len == 2;
            if (!(r->lo < r->hi))
                return ferr(c, "Bottom must be less than top");
        }
    } else if (key_is(op, oplen, "<=") || key_is(op, oplen, "<")) {
        if (!is_num(e1))
            return ferr(c, "Value of %s must be numeric", op);
        if (n > 2)
            return ferr(c, "Too many elements in numeric expression");
        r->hi = json_number_value(e1);
        r->has_hi = 1;
        r->hi_incl = oplen == 2;
    } else {
        return ferr(c, "Unrecognized numeric range operator: %s", op);
    }
    if (outer_keys > 1)
        return ferr(c, "Too many elements in numeric expression");
    return 0;
}

/* {"prefix": {"equals-ignore-case": "x"}} and the suffix form. */
static int parse_ic_sub(pctx *c, rules_alt *a, json_t *val, size_t outer_keys, rules_alt_kind kind,
                        const char *what)
{
    void *it = json_object_iter(val);
    if (it == NULL)
        return ferr(c, "%c%s expression name not found", what[0] - 'a' + 'A', what + 1);
    const char *k = json_object_iter_key(it);
    if (!key_is(k, json_object_iter_key_len(it), "equals-ignore-case"))
        return ferr(c, "Unsupported %s pattern: %s", what, k);
    json_t *v = json_object_iter_value(it);
    if (!json_is_string(v))
        return ferr(c, "equals-ignore-case match pattern must be a string");
    if (json_object_size(val) > 1 || outer_keys > 1)
        return ferr(c, "Only one key allowed in match expression");
    return set_str(c, a, kind, v);
}

static int parse_match_expr(pctx *c, rules_alt *a, json_t *obj)
{
    void *it = json_object_iter(obj);
    if (it == NULL)
        return ferr(c, "Match expression name not found");
    const char *k = json_object_iter_key(it);
    size_t klen = json_object_iter_key_len(it);
    json_t *v = json_object_iter_value(it);
    size_t nkeys = json_object_size(obj);
    int rc;

    if (key_is(k, klen, "prefix") || key_is(k, klen, "suffix")) {
        int pre = k[0] == 'p';
        if (json_is_object(v))
            return parse_ic_sub(c, a, v, nkeys, pre ? RULES_ALT_PREFIX_IC : RULES_ALT_SUFFIX_IC,
                                pre ? "prefix" : "suffix");
        if (!json_is_string(v))
            return ferr(c, "%s match pattern must be a string", pre ? "prefix" : "suffix");
        rc = set_str(c, a, pre ? RULES_ALT_PREFIX : RULES_ALT_SUFFIX, v);
    } else if (key_is(k, klen, "numeric")) {
        return parse_numeric(c, a, v, nkeys);
    } else if (key_is(k, klen, "anything-but")) {
        return parse_anything_but(c, a, v, nkeys);
    } else if (key_is(k, klen, "exists")) {
        if (!json_is_boolean(v))
            return ferr(c, "exists match pattern must be either true or false.");
        a->kind = RULES_ALT_EXISTS;
        a->exists = json_is_true(v);
        rc = 0;
    } else if (key_is(k, klen, "cidr")) {
        if (!json_is_string(v))
            return ferr(c, "cidr match pattern must be a string");
        rc = parse_cidr(c, a, v);
    } else if (key_is(k, klen, "equals-ignore-case")) {
        if (!json_is_string(v))
            return ferr(c, "equals-ignore-case match pattern must be a string");
        rc = set_str(c, a, RULES_ALT_EQUALS_IC, v);
    } else if (key_is(k, klen, "wildcard")) {
        if (!json_is_string(v))
            return ferr(c, "wildcard match pattern must be a string");
        rc = set_wildcard(c, a, v);
    } else {
        return ferr(c, "Unrecognized match type %s", k);
    }
    if (rc != 0)
        return rc;
    if (nkeys > 1)
        return ferr(c, "Only one key allowed in match expression");
    return 0;
}

static int parse_alt(pctx *c, rules_alt *a, json_t *v)
{
    if (json_is_object(v))
        return parse_match_expr(c, a, v);
    if (json_is_string(v)) {
        uint8_t addr[16];
        int fam = rules_parse_ip(json_string_value(v), json_string_length(v), addr);
        if (fam != 0) {
            a->kind = RULES_ALT_CIDR;
            a->cidr.family = (uint8_t)fam;
            a->cidr.bits = fam == 4 ? 32 : 128;
            memcpy(a->cidr.addr, addr, 16);
            return ar_str(c->ar, json_string_value(v), json_string_length(v), &a->str);
        }
        return set_str(c, a, RULES_ALT_STRING, v);
    }
    if (json_is_number(v))
        return set_number(c, a, json_number_value(v));
    if (json_is_true(v))
        a->kind = RULES_ALT_TRUE;
    else if (json_is_false(v))
        a->kind = RULES_ALT_FALSE;
    else if (json_is_null(v))
        a->kind = RULES_ALT_NULL;
    else
        return ferr(c, "Match value must be String, number, true, false, or null");
    return 0;
}

/* ------------------------------------------------- wildcard complexity */

/*
 * The wildcard values of one condition as one NFA: position (v, j) means "value
 * v has consumed its first j literal bytes"; a '*' at literal offset j is a
 * self-loop on (v, j). The measure is the largest number of positions past a
 * value's first '*' that are active together, over every input string,
 * explored as the subset construction (bounded: exploring too many subsets is
 * itself "too complex").
 */
typedef struct wc_val {
    const char *lit; /* literal bytes, escapes removed */
    size_t n;
    const uint8_t *star; /* star[j]: '*' at literal offset j, j in 0..n */
    size_t first_star;
    size_t base; /* global index of position 0 */
} wc_val;

#define WC_MAX_SUBSETS 2048

typedef struct wc_set {
    uint32_t *pos;
    size_t n;
} wc_set;

static int wc_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int wc_collect(arena *tmp, const rules_wildcard *wc, wc_val *out, size_t *base)
{
    size_t n = 0;
    for (size_t i = 0; i < wc->nsegs; i++)
        n += wc->segs[i].len;
    char *lit = ar_alloc(tmp, n + 1);
    uint8_t *star = ar_alloc(tmp, n + 1);
    if (lit == NULL || star == NULL)
        return EVBUS_ENOMEM;
    size_t k = 0;
    out->first_star = (size_t)-1;
    for (size_t i = 0; i < wc->nsegs; i++) {
        if (i > 0) {
            star[k] = 1;
            if (out->first_star == (size_t)-1)
                out->first_star = k;
        }
        memcpy(lit + k, wc->segs[i].s, wc->segs[i].len);
        k += wc->segs[i].len;
    }
    out->lit = lit;
    out->n = n;
    out->star = star;
    out->base = *base;
    *base += n + 1;
    return 0;
}

/* 1: too complex, 0: fine, <0: error. */
static int wc_too_complex(const rules_cond *cond)
{
    size_t nvals = 0;
    int any_star = 0;
    for (size_t i = 0; i < cond->nalts; i++) {
        const rules_alt *a = &cond->alts[i];
        if (a->kind == RULES_ALT_WILDCARD) {
            nvals++;
            any_star |= a->wc.nsegs > 1;
        } else if (a->kind == RULES_ALT_ANYTHING_BUT && a->ab.nitems > 0 &&
                   a->ab.items[0].kind == RULES_ALT_WILDCARD) {
            nvals += a->ab.nitems;
            for (size_t j = 0; j < a->ab.nitems; j++)
                any_star |= a->ab.items[j].wc.nsegs > 1;
        }
    }
    if (!any_star)
        return 0;

    arena *tmp = calloc(1, sizeof(*tmp));
    if (tmp == NULL)
        return EVBUS_ENOMEM;
    int result = EVBUS_ENOMEM;
    wc_val *vals = ar_alloc(tmp, nvals * sizeof(*vals));
    if (vals == NULL)
        goto out;
    size_t nv = 0, npos = 0;
    for (size_t i = 0; i < cond->nalts; i++) {
        const rules_alt *a = &cond->alts[i];
        if (a->kind == RULES_ALT_WILDCARD) {
            if (wc_collect(tmp, &a->wc, &vals[nv++], &npos) != 0)
                goto out;
        } else if (a->kind == RULES_ALT_ANYTHING_BUT && a->ab.nitems > 0 &&
                   a->ab.items[0].kind == RULES_ALT_WILDCARD) {
            for (size_t j = 0; j < a->ab.nitems; j++)
                if (wc_collect(tmp, &a->ab.items[j].wc, &vals[nv++], &npos) != 0)
                    goto out;
        }
    }
    /* owner[p]: value of global position p. */
    uint32_t *owner = ar_alloc(tmp, npos * sizeof(uint32_t));
    uint8_t seen_byte[256] = {0};
    if (owner == NULL)
        goto out;
    for (size_t v = 0; v < nv; v++) {
        for (size_t j = 0; j <= vals[v].n; j++)
            owner[vals[v].base + j] = (uint32_t)v;
        for (size_t j = 0; j < vals[v].n; j++)
            seen_byte[(unsigned char)vals[v].lit[j]] = 1;
    }
    int alphabet[257];
    size_t nalpha = 0;
    int other = -1;
    for (int b = 0; b < 256; b++) {
        if (seen_byte[b])
            alphabet[nalpha++] = b;
        else if (other < 0)
            other = b;
    }
    if (other >= 0)
        alphabet[nalpha++] = other;

    wc_set *sets = ar_alloc(tmp, WC_MAX_SUBSETS * sizeof(*sets));
    uint32_t *scratch = ar_alloc(tmp, (npos + 1) * sizeof(uint32_t));
    uint8_t *mark = ar_alloc(tmp, npos + 1);
    if (sets == NULL || scratch == NULL || mark == NULL)
        goto out;
    size_t nsets = 1;
    sets[0].pos = ar_alloc(tmp, nv * sizeof(uint32_t));
    if (sets[0].pos == NULL)
        goto out;
    for (size_t v = 0; v < nv; v++)
        sets[0].pos[v] = (uint32_t)vals[v].base;
    sets[0].n = nv;

    result = 0;
    for (size_t si = 0; si < nsets && result == 0; si++) {
        for (size_t ai = 0; ai < nalpha && result == 0; ai++) {
            char b = (char)alphabet[ai];
            size_t nn = 0;
            const wc_set *cur = &sets[si];
            for (size_t k = 0; k < cur->n; k++) {
                uint32_t p = cur->pos[k];
                const wc_val *w = &vals[owner[p]];
                size_t j = p - w->base;
                if (w->star[j] && !mark[p]) {
                    mark[p] = 1;
                    scratch[nn++] = p;
                }
                if (j < w->n && w->lit[j] == b && !mark[p + 1]) {
                    mark[p + 1] = 1;
                    scratch[nn++] = p + 1;
                }
            }
            size_t weight = 0;
            for (size_t k = 0; k < nn; k++) {
                mark[scratch[k]] = 0;
                const wc_val *w = &vals[owner[scratch[k]]];
                if (scratch[k] - w->base >= w->first_star && w->first_star != (size_t)-1)
                    weight++;
            }
            if (weight > RULES_MAX_WILDCARD_COMPLEXITY) {
                result = 1;
                break;
            }
            if (nn == 0)
                continue;
            qsort(scratch, nn, sizeof(uint32_t), wc_cmp_u32);
            size_t f;
            for (f = 0; f < nsets; f++)
                if (sets[f].n == nn && memcmp(sets[f].pos, scratch, nn * sizeof(uint32_t)) == 0)
                    break;
            if (f < nsets)
                continue;
            if (nsets == WC_MAX_SUBSETS) {
                result = 1;
                break;
            }
            sets[nsets].pos = ar_alloc(tmp, nn * sizeof(uint32_t));
            if (sets[nsets].pos == NULL) {
                result = EVBUS_ENOMEM;
                break;
            }
            memcpy(sets[nsets].pos, scratch, nn * sizeof(uint32_t));
            sets[nsets].n = nn;
            nsets++;
        }
    }
out:
    ar_free(tmp);
    return result;
}

/* ------------------------------------------------------- structure walk */

static int parse_object(pctx *c, blist *rules, json_t *obj, int inside_or);

static int write_field(pctx *c, blist *rules, json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n == 0)
        return ferr(c, "Empty arrays are not allowed");
    /* The matcher's path table grows with the square of a path's depth (a key "a.b" counts
     * as two levels, as the event is flattened): bound it, so one small pattern cannot make
     * every node allocate and work for seconds in apply. */
    size_t levels = 0;
    for (size_t i = 0; i < c->depth; i++) {
        levels++;
        for (size_t k = 0; k < c->path[i].len; k++)
            levels += c->path[i].s[k] == '.';
    }
    if (levels > RULES_MAX_PATH_LEVELS)
        return ferr(c, "Field path is deeper than %u levels", RULES_MAX_PATH_LEVELS);
    rules_cond *cond = ar_alloc(c->ar, sizeof(*cond));
    if (cond == NULL)
        return EVBUS_ENOMEM;
    cond->alts = ar_alloc(c->ar, n * sizeof(rules_alt));
    cond->segs = ar_alloc(c->ar, c->depth * sizeof(rules_str));
    if (cond->alts == NULL || cond->segs == NULL)
        return EVBUS_ENOMEM;
    cond->nalts = n;
    for (size_t i = 0; i < n; i++) {
        int rc = parse_alt(c, &cond->alts[i], json_array_get(arr, i));
        if (rc != 0)
            return rc;
        if (cond->alts[i].kind == RULES_ALT_EXISTS && !cond->alts[i].exists)
            cond->has_absent = 1;
    }
    size_t plen = 0;
    for (size_t i = 0; i < c->depth; i++) {
        int rc = ar_str(c->ar, c->path[i].s, c->path[i].len, &cond->segs[i]);
        if (rc != 0)
            return rc;
        plen += c->path[i].len + (i > 0);
    }
    cond->nsegs = c->depth;
    char *p = ar_alloc(c->ar, plen + 1);
    if (p == NULL)
        return EVBUS_ENOMEM;
    cond->path.s = p;
    cond->path.len = plen;
    for (size_t i = 0; i < c->depth; i++) {
        if (i > 0)
            *p++ = '.';
        memcpy(p, c->path[i].s, c->path[i].len);
        p += c->path[i].len;
    }
    *p = 0;

    int rc = wc_too_complex(cond);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return ferr(c, "%s", COMPLEXITY_MSG);

    if (rules->n == 0 && (rc = blist_push(rules, NULL)) != 0)
        return rc;
    for (size_t i = 0; i < rules->n; i++)
        if ((rc = bconj_put(&rules->v[i], cond)) != 0)
            return rc;
    return 0;
}

static int parse_or(pctx *c, blist *rules, json_t *arr)
{
    if (!json_is_array(arr))
        return ferr(c, "It must be an Array followed with $or.");
    blist current = {0};
    blist branch = {0};
    int rc = 0;
    for (size_t i = 0; i < rules->n; i++)
        if ((rc = blist_push(&current, &rules->v[i])) != 0)
            goto out;
    blist_clear(rules);

    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_object(e)) {
            rc = ferr(c, "Only JSON object is allowed in array of $or relationship.");
            goto out;
        }
        blist_clear(&branch);
        for (size_t j = 0; j < current.n; j++)
            if ((rc = blist_push(&branch, &current.v[j])) != 0)
                goto out;
        if (branch.n == 0 && (rc = blist_push(&branch, NULL)) != 0)
            goto out;
        if ((rc = parse_object(c, &branch, e, 1)) != 0)
            goto out;
        for (size_t j = 0; j < branch.n; j++)
            if ((rc = blist_push(rules, &branch.v[j])) != 0)
                goto out;
        if (rules->n > RULES_MAX_CONJS) {
            rc = ferr(c, "$or expands to more than %d alternatives", RULES_MAX_CONJS);
            goto out;
        }
    }
    if (n < 2)
        rc = ferr(c, "There must have at least 2 Objects in $or relationship.");
out:
    blist_free(&branch);
    blist_free(&current);
    return rc;
}

static int parse_object(pctx *c, blist *rules, json_t *obj, int inside_or)
{
    if (json_object_size(obj) == 0)
        return ferr(c, "Empty objects are not allowed");
    for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        json_t *v = json_object_iter_value(it);
        int rc;
        if (c->or_mode && key_is(key, klen, "$or")) {
            if ((rc = parse_or(c, rules, v)) != 0)
                return rc;
            continue;
        }
        if (inside_or) {
            for (size_t i = 0; i < sizeof(OR_RESERVED) / sizeof(OR_RESERVED[0]); i++)
                if (key_is(key, klen, OR_RESERVED[i]))
                    return ferr(
                        c, "%s is Ruler reserved fieldName which cannot be used inside $or.", key);
        }
        if ((rc = path_push(c, key, klen)) != 0)
            return rc;
        if (json_is_object(v)) {
            rc = parse_object(c, rules, v, inside_or);
        } else if (json_is_array(v)) {
            rc = write_field(c, rules, v);
        } else {
            char path[256];
            path_text(c, path, sizeof(path));
            rc = perr(c, "\"%s\" must be an object or an array", path);
        }
        c->depth--;
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int cond_cmp(const void *a, const void *b)
{
    const rules_cond *x = *(const rules_cond *const *)a;
    const rules_cond *y = *(const rules_cond *const *)b;
    size_t n = x->path.len < y->path.len ? x->path.len : y->path.len;
    int r = memcmp(x->path.s, y->path.s, n);
    if (r != 0)
        return r;
    return x->path.len < y->path.len ? -1 : x->path.len > y->path.len;
}

/* One full parse attempt in the given $or mode; on success *out is set. */
static int parse_attempt(json_t *root, int or_mode, rules_pattern **out, char *err, size_t err_len)
{
    pctx c = {.or_mode = or_mode, .err = err, .err_len = err_len};
    blist rules = {0};
    int rc = EVBUS_ENOMEM;
    c.ar = calloc(1, sizeof(*c.ar));
    if (c.ar == NULL)
        goto fail;
    rc = parse_object(&c, &rules, root, 0);
    if (rc != 0)
        goto fail;
    rc = EVBUS_ENOMEM;
    rules_pattern *p = ar_alloc(c.ar, sizeof(*p));
    if (p == NULL)
        goto fail;
    p->conjs = ar_alloc(c.ar, rules.n * sizeof(rules_conj));
    if (p->conjs == NULL)
        goto fail;
    p->nconjs = rules.n;
    for (size_t i = 0; i < rules.n; i++) {
        bconj *bc = &rules.v[i];
        qsort(bc->f, bc->n, sizeof(*bc->f), cond_cmp);
        rules_conj *cj = &p->conjs[i];
        cj->conds = ar_alloc(c.ar, bc->n * sizeof(rules_cond));
        if (cj->conds == NULL)
            goto fail;
        cj->nconds = bc->n;
        for (size_t j = 0; j < bc->n; j++)
            cj->conds[j] = *bc->f[j];
    }
    blist_free(&rules);
    free(c.path);
    p->arena = c.ar;
    p->mem_bytes = c.ar->bytes + sizeof(arena);
    *out = p;
    return 0;
fail:
    if (rc == EVBUS_ENOMEM && err != NULL && err_len > 0)
        snprintf(err, err_len, "out of memory");
    blist_free(&rules);
    free(c.path);
    ar_free(c.ar);
    return rc;
}

int rules_pattern_parse(const char *json, size_t len, const rules_limits *limits,
                        rules_pattern **out, char *err, size_t err_len)
{
    size_t max = (limits != NULL && limits->max_pattern_bytes != 0)
                     ? limits->max_pattern_bytes
                     : RULES_DEFAULT_MAX_PATTERN_BYTES;
    *out = NULL;
    if (err != NULL && err_len > 0)
        err[0] = 0;
    if (len > max) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "Pattern is %zu bytes, over the limit of %zu bytes", len, max);
        return EVBUS_ETOOBIG;
    }
    /* jansson silently drops a raw NUL after a number or literal ({"a":[1<NUL>]}); JSON text
     * has none (only the escape \u0000), and the matcher's scanner rejects it too. */
    const char *nul = memchr(json, 0, len);
    if (nul != NULL) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "Invalid JSON at offset %zu: NUL byte", (size_t)(nul - json));
        return EVBUS_EINVAL;
    }
    json_error_t jerr;
    json_t *root =
        json_loadb(json, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "Invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                     jerr.text);
        return EVBUS_EINVAL;
    }
    int rc;
    if (!json_is_object(root)) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "Filter is not an object");
        rc = EVBUS_EINVAL;
        goto out;
    }
    rc = parse_attempt(root, 1, out, err, err_len);
    if (rc == EVBUS_EINVAL) {
        /* event-ruler's legacy fallback: "$or" as a plain field name. The first
         * error is the one reported, so the second attempt writes nowhere. */
        rules_pattern *legacy = NULL;
        if (parse_attempt(root, 0, &legacy, NULL, 0) == 0) {
            *out = legacy;
            rc = 0;
            if (err != NULL && err_len > 0)
                err[0] = 0;
        }
    }
out:
    json_decref(root);
    return rc;
}

void rules_pattern_free(rules_pattern *p)
{
    if (p != NULL)
        ar_free(p->arena);
}

size_t rules_pattern_memory(const rules_pattern *p)
{
    return p != NULL ? p->mem_bytes : 0;
}
