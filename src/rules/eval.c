/*
 * rules/eval: the reference evaluator (rules_pattern_match). Written for
 * clarity, not speed: it is the oracle the compiled matcher is tested against,
 * and the engine behind `evbusctl test-pattern`.
 *
 * 1. The event is parsed with jansson and flattened into leaves (pattern.h's
 *    event model): only leaves whose dotted path some condition names are kept,
 *    and only subtrees that can lead to such a path are walked. Every array met
 *    gets an id; a leaf records (array id, element index) for each enclosing
 *    array.
 * 2. Each conjunction is a depth-first search over its conditions in order,
 *    choosing one matching leaf per condition such that no array is entered at
 *    two different indexes (array consistency). exists:false holds when no leaf
 *    at its path is consistent with the choices made before it.
 * 3. Failed (condition, relevant choices) states are remembered, so a search
 *    over many independent arrays stays polynomial.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "evbus/errors.h"
#include "rules/pattern.h"

typedef struct mpair {
    uint32_t arr;
    uint32_t idx;
} mpair;

typedef struct leaf {
    json_t *v;     /* borrowed from the event tree */
    size_t pathid; /* index into ev.paths */
    size_t m_off;  /* membership: ev.pairs[m_off .. m_off + m_n) */
    size_t m_n;
} leaf;

typedef struct idxvec {
    size_t *v;
    size_t n, cap;
} idxvec;

typedef struct memo_set {
    char **keys; /* open addressing; key = 8-byte length + bytes */
    size_t cap, n;
} memo_set;

typedef struct ev {
    const rules_str **paths; /* distinct condition paths */
    size_t npaths;
    leaf *leaves;
    size_t nleaves, leaves_cap;
    mpair *pairs;
    size_t npairs, pairs_cap;
    mpair *stack; /* membership of the walk position */
    size_t depth, stack_cap;
    uint32_t narrays;
    char *pbuf; /* dotted path of the walk position */
    size_t plen, pcap;
    idxvec *by_path; /* leaves per path id */
    /* search state */
    int64_t *assign; /* per array id: chosen index or -1 */
    uint32_t *undo;
    size_t nundo, undo_cap;
    memo_set memo;
    int oom;
} ev;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need)
        cap2 *= 2;
    void *q = realloc(*p, cap2 * elem);
    if (q == NULL)
        return EVBUS_ENOMEM;
    *p = q;
    *cap = cap2;
    return 0;
}

static int idx_push(idxvec *v, size_t x)
{
    if (grow((void **)&v->v, &v->cap, v->n + 1, sizeof(size_t)) != 0)
        return EVBUS_ENOMEM;
    v->v[v->n++] = x;
    return 0;
}

/* ------------------------------------------------------------- flatten */

/* -1: no condition path is this one or below it; otherwise 1 if some path
 * extends it with '.', and *exact the path id when one equals it. */
static int path_relevant(const ev *e, long *exact)
{
    int below = 0;
    *exact = -1;
    for (size_t i = 0; i < e->npaths; i++) {
        const rules_str *p = e->paths[i];
        if (p->len == e->plen && memcmp(p->s, e->pbuf, e->plen) == 0)
            *exact = (long)i;
        else if (p->len > e->plen && memcmp(p->s, e->pbuf, e->plen) == 0 && p->s[e->plen] == '.')
            below = 1;
    }
    return (*exact >= 0 || below) ? below : -1;
}

static int walk(ev *e, json_t *v);
static int walk_value(ev *e, json_t *v, long exact);

/* Walks an object's members; the root object is walked with root = 1. */
static int walk_members(ev *e, json_t *v, int root)
{
    const char *key;
    size_t klen;
    json_t *child;
    size_t saved = e->plen;
    json_object_keylen_foreach(v, key, klen, child)
    {
        size_t need = saved + 1 + klen + 1;
        if (grow((void **)&e->pbuf, &e->pcap, need, 1) != 0)
            return EVBUS_ENOMEM;
        size_t n = saved;
        if (!root)
            e->pbuf[n++] = '.';
        memcpy(e->pbuf + n, key, klen);
        e->plen = n + klen;
        int rc = walk(e, child);
        e->plen = saved;
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int walk_value(ev *e, json_t *v, long exact)
{
    if (json_is_object(v))
        return walk_members(e, v, 0);
    if (json_is_array(v)) {
        uint32_t id = e->narrays++;
        if (grow((void **)&e->stack, &e->stack_cap, e->depth + 1, sizeof(mpair)) != 0)
            return EVBUS_ENOMEM;
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child)
        {
            e->stack[e->depth].arr = id;
            e->stack[e->depth].idx = (uint32_t)i;
            e->depth++;
            int rc = walk_value(e, child, exact);
            e->depth--;
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    if (exact < 0)
        return 0;
    if (grow((void **)&e->leaves, &e->leaves_cap, e->nleaves + 1, sizeof(leaf)) != 0 ||
        grow((void **)&e->pairs, &e->pairs_cap, e->npairs + e->depth, sizeof(mpair)) != 0)
        return EVBUS_ENOMEM;
    leaf *l = &e->leaves[e->nleaves++];
    l->v = v;
    l->pathid = (size_t)exact;
    l->m_off = e->npairs;
    l->m_n = e->depth;
    if (e->depth > 0)
        memcpy(e->pairs + e->npairs, e->stack, e->depth * sizeof(mpair));
    e->npairs += e->depth;
    return 0;
}

static int walk(ev *e, json_t *v)
{
    long exact;
    int below = path_relevant(e, &exact);
    if (below < 0)
        return 0;
    if (!below && json_is_object(v))
        return 0; /* nothing is named below this object */
    return walk_value(e, v, exact);
}

/* ------------------------------------------------------ value matching */

static int str_leaf(const json_t *v, const char **s, size_t *len)
{
    if (!json_is_string(v))
        return 0;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

/* Case-folded copy for the ignore-case operators; NULL on OOM. */
static char *folded(const char *s, size_t len)
{
    char *f = malloc(len + 1);
    if (f == NULL)
        return NULL;
    rules_casefold(s, len, f);
    f[len] = 0;
    return f;
}

static int alt_match(const rules_alt *a, const json_t *v, int *oom)
{
    const char *s;
    size_t len;
    switch (a->kind) {
    case RULES_ALT_STRING:
        return str_leaf(v, &s, &len) && len == a->str.len && memcmp(s, a->str.s, len) == 0;
    case RULES_ALT_NUMBER: return json_is_number(v) && json_number_value(v) == a->num;
    case RULES_ALT_TRUE: return json_is_true(v);
    case RULES_ALT_FALSE: return json_is_false(v);
    case RULES_ALT_NULL: return json_is_null(v);
    case RULES_ALT_PREFIX:
        return str_leaf(v, &s, &len) && len >= a->str.len && memcmp(s, a->str.s, a->str.len) == 0;
    case RULES_ALT_SUFFIX:
        return str_leaf(v, &s, &len) && len >= a->str.len &&
               memcmp(s + len - a->str.len, a->str.s, a->str.len) == 0;
    case RULES_ALT_PREFIX_IC:
    case RULES_ALT_SUFFIX_IC:
    case RULES_ALT_EQUALS_IC: {
        if (!str_leaf(v, &s, &len) || len < a->folded.len)
            return 0;
        if (a->kind == RULES_ALT_EQUALS_IC && len != a->folded.len)
            return 0;
        char *f = folded(s, len);
        if (f == NULL) {
            *oom = 1;
            return 0;
        }
        const char *at = a->kind == RULES_ALT_SUFFIX_IC ? f + len - a->folded.len : f;
        int r = memcmp(at, a->folded.s, a->folded.len) == 0;
        free(f);
        return r;
    }
    case RULES_ALT_WILDCARD: return str_leaf(v, &s, &len) && rules_wildcard_match(&a->wc, s, len);
    case RULES_ALT_CIDR: {
        uint8_t addr[16];
        if (!str_leaf(v, &s, &len))
            return 0;
        int fam = rules_parse_ip(s, len, addr);
        return fam != 0 && rules_cidr_contains(&a->cidr, fam, addr);
    }
    case RULES_ALT_NUMERIC: {
        if (!json_is_number(v))
            return 0;
        double x = json_number_value(v);
        const rules_range *r = &a->range;
        if (r->has_lo && (r->lo_incl ? x < r->lo : x <= r->lo))
            return 0;
        if (r->has_hi && (r->hi_incl ? x > r->hi : x >= r->hi))
            return 0;
        return 1;
    }
    case RULES_ALT_ANYTHING_BUT:
        for (size_t i = 0; i < a->ab.nitems; i++)
            if (alt_match(&a->ab.items[i], v, oom))
                return 0;
        return 1;
    case RULES_ALT_EXISTS: return a->exists; /* exists:false never matches a leaf */
    }
    return 0;
}

static int cond_match(const rules_cond *c, const json_t *v, int *oom)
{
    for (size_t i = 0; i < c->nalts; i++)
        if (alt_match(&c->alts[i], v, oom))
            return 1;
    return 0;
}

/* --------------------------------------------------------------- search */

static int consistent(const ev *e, const leaf *l)
{
    for (size_t k = 0; k < l->m_n; k++) {
        const mpair *m = &e->pairs[l->m_off + k];
        if (e->assign[m->arr] >= 0 && e->assign[m->arr] != (int64_t)m->idx)
            return 0;
    }
    return 1;
}

/* Assigns the leaf's arrays; returns the undo mark to restore. */
static size_t apply(ev *e, const leaf *l)
{
    size_t mark = e->nundo;
    for (size_t k = 0; k < l->m_n; k++) {
        const mpair *m = &e->pairs[l->m_off + k];
        if (e->assign[m->arr] < 0) {
            if (grow((void **)&e->undo, &e->undo_cap, e->nundo + 1, sizeof(uint32_t)) != 0) {
                e->oom = 1;
                continue;
            }
            e->assign[m->arr] = m->idx;
            e->undo[e->nundo++] = m->arr;
        }
    }
    return mark;
}

static void unapply(ev *e, size_t mark)
{
    while (e->nundo > mark)
        e->assign[e->undo[--e->nundo]] = -1;
}

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Memo key: condition index + the choices (array id, index) that can still
 * matter, i.e. for arrays some leaf at a path of conditions ci.. lies under
 * (rel[ci]); the outcome of search(ci) depends on nothing else. */
static char *memo_key(ev *e, const uint64_t *rel, size_t ci, size_t *klen)
{
    uint32_t *ids = malloc((e->nundo ? e->nundo : 1) * sizeof(uint32_t));
    if (ids == NULL) {
        e->oom = 1;
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < e->nundo; i++) {
        uint32_t a = e->undo[i];
        if (rel[a / 64] & (1ull << (a % 64)))
            ids[n++] = a;
    }
    size_t len = sizeof(size_t) + n * 8;
    char *k = malloc(sizeof(size_t) + len);
    if (k == NULL) {
        free(ids);
        e->oom = 1;
        return NULL;
    }
    qsort(ids, n, sizeof(uint32_t), cmp_u32);
    memcpy(k, &len, sizeof(size_t));
    char *p = k + sizeof(size_t);
    memcpy(p, &ci, sizeof(size_t));
    p += sizeof(size_t);
    for (size_t i = 0; i < n; i++) {
        uint32_t idx = (uint32_t)e->assign[ids[i]];
        memcpy(p, &ids[i], 4);
        memcpy(p + 4, &idx, 4);
        p += 8;
    }
    free(ids);
    *klen = len;
    return k;
}

static int memo_has(const memo_set *m, const char *k)
{
    if (m->cap == 0)
        return 0;
    size_t len;
    memcpy(&len, k, sizeof(size_t));
    size_t h = (size_t)fnv(k + sizeof(size_t), len) & (m->cap - 1);
    while (m->keys[h] != NULL) {
        /* Compare the stored length first: a shorter stored key must not be read past. */
        size_t stored;
        memcpy(&stored, m->keys[h], sizeof(size_t));
        if (stored == len && memcmp(m->keys[h] + sizeof(size_t), k + sizeof(size_t), len) == 0)
            return 1;
        h = (h + 1) & (m->cap - 1);
    }
    return 0;
}

static void memo_add(ev *e, char *k)
{
    memo_set *m = &e->memo;
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        char **keys = calloc(cap, sizeof(char *));
        if (keys == NULL) {
            free(k);
            e->oom = 1;
            return;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i] == NULL)
                continue;
            size_t len;
            memcpy(&len, m->keys[i], sizeof(size_t));
            size_t h = (size_t)fnv(m->keys[i] + sizeof(size_t), len) & (cap - 1);
            while (keys[h] != NULL)
                h = (h + 1) & (cap - 1);
            keys[h] = m->keys[i];
        }
        free(m->keys);
        m->keys = keys;
        m->cap = cap;
    }
    size_t len;
    memcpy(&len, k, sizeof(size_t));
    size_t h = (size_t)fnv(k + sizeof(size_t), len) & (m->cap - 1);
    while (m->keys[h] != NULL)
        h = (h + 1) & (m->cap - 1);
    m->keys[h] = k;
    m->n++;
}

static void memo_clear(memo_set *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    m->keys = NULL;
    m->cap = m->n = 0;
}

typedef struct conj_ctx {
    const rules_conj *cj;
    idxvec *cands; /* per condition: leaves whose value matches */
    size_t *pathid;
    uint64_t *rel; /* per condition ci: bitset of arrays under leaves of conditions ci.. */
    size_t words;  /* uint64_t words per bitset */
} conj_ctx;

static int search(ev *e, const conj_ctx *x, size_t ci)
{
    if (ci == x->cj->nconds)
        return 1;
    if (e->oom)
        return 0;
    size_t klen;
    char *key = memo_key(e, x->rel + ci * x->words, ci, &klen);
    if (key == NULL)
        return 0;
    if (memo_has(&e->memo, key)) {
        free(key);
        return 0;
    }
    const rules_cond *c = &x->cj->conds[ci];
    if (c->has_absent) {
        const idxvec *all = &e->by_path[x->pathid[ci]];
        int present = 0;
        for (size_t k = 0; k < all->n && !present; k++)
            present = consistent(e, &e->leaves[all->v[k]]);
        if (!present && search(e, x, ci + 1)) {
            free(key);
            return 1;
        }
    }
    const idxvec *cand = &x->cands[ci];
    for (size_t k = 0; k < cand->n; k++) {
        const leaf *l = &e->leaves[cand->v[k]];
        if (!consistent(e, l))
            continue;
        size_t mark = apply(e, l);
        int ok = search(e, x, ci + 1);
        unapply(e, mark);
        if (ok) {
            free(key);
            return 1;
        }
    }
    memo_add(e, key);
    return 0;
}

/* -------------------------------------------------------------- explain */

static void value_text(const json_t *v, char *buf, size_t len)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (s == NULL) {
        snprintf(buf, len, "?");
        return;
    }
    if (strlen(s) > 80)
        snprintf(buf, len, "%.77s...", s);
    else
        snprintf(buf, len, "%s", s);
    free(s);
}

static void explainf(char *out, size_t out_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void explainf(char *out, size_t out_len, const char *fmt, ...)
{
    if (out == NULL || out_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, out_len, fmt, ap);
    va_end(ap);
}

/* Why conjunction x failed, for a person. Returns the number of conditions
 * that have a matching value on their own (to pick the closest branch). */
static size_t explain_conj(const ev *e, const conj_ctx *x, char *out, size_t out_len)
{
    size_t ok = 0;
    int written = 0;
    for (size_t ci = 0; ci < x->cj->nconds; ci++) {
        const rules_cond *c = &x->cj->conds[ci];
        const idxvec *all = &e->by_path[x->pathid[ci]];
        if (x->cands[ci].n > 0 || (c->has_absent && all->n == 0)) {
            ok++;
            continue;
        }
        if (written)
            continue;
        written = 1;
        if (all->n == 0) {
            explainf(out, out_len,
                     "\"%s\": no value in the event (missing, or only an object or empty array)",
                     c->path.s);
        } else if (c->has_absent && c->nalts == 1) {
            explainf(out, out_len, "\"%s\": must not exist, but the event has a value", c->path.s);
        } else if (all->n == 1) {
            char v[96];
            value_text(e->leaves[all->v[0]].v, v, sizeof(v));
            explainf(out, out_len, "\"%s\": value %s matches none of the pattern's values",
                     c->path.s, v);
        } else {
            explainf(out, out_len, "\"%s\": none of the event's %zu values matches", c->path.s,
                     all->n);
        }
    }
    if (!written)
        explainf(out, out_len,
                 "every field has a matching value, but not within the same array element "
                 "(array consistency) or an exists:false field is present there");
    return ok;
}

/* ---------------------------------------------------------------- entry */

static int find_path(const ev *e, const rules_str *p)
{
    for (size_t i = 0; i < e->npaths; i++)
        if (e->paths[i]->len == p->len && memcmp(e->paths[i]->s, p->s, p->len) == 0)
            return (int)i;
    return -1;
}

int rules_pattern_match(const rules_pattern *p, const char *event, size_t len, int *matched,
                        char *explain, size_t explain_len)
{
    *matched = 0;
    if (explain != NULL && explain_len > 0)
        explain[0] = 0;
    /* As in rules_pattern_parse: jansson would drop a raw NUL after a number or literal. */
    const char *nul = memchr(event, 0, len);
    if (nul != NULL) {
        explainf(explain, explain_len, "Event is not valid JSON (NUL byte at offset %zu)",
                 (size_t)(nul - event));
        return EVBUS_EINVAL;
    }
    json_error_t jerr;
    json_t *root =
        json_loadb(event, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        explainf(explain, explain_len, "Event is not valid JSON (line %d column %d: %s)", jerr.line,
                 jerr.column, jerr.text);
        return EVBUS_EINVAL;
    }
    if (!json_is_object(root)) {
        explainf(explain, explain_len, "Event is not a JSON object");
        json_decref(root);
        return EVBUS_EINVAL;
    }

    ev e = {0};
    int rc = EVBUS_ENOMEM;
    size_t ncond_total = 0;
    for (size_t i = 0; i < p->nconjs; i++)
        ncond_total += p->conjs[i].nconds;
    e.paths = calloc(ncond_total ? ncond_total : 1, sizeof(*e.paths));
    size_t *pathids = calloc(ncond_total ? ncond_total : 1, sizeof(size_t));
    idxvec *cands = calloc(ncond_total ? ncond_total : 1, sizeof(idxvec));
    if (e.paths == NULL || pathids == NULL || cands == NULL)
        goto out;
    for (size_t i = 0, k = 0; i < p->nconjs; i++) {
        for (size_t j = 0; j < p->conjs[i].nconds; j++, k++) {
            const rules_str *path = &p->conjs[i].conds[j].path;
            int id = find_path(&e, path);
            if (id < 0) {
                id = (int)e.npaths;
                e.paths[e.npaths++] = path;
            }
            pathids[k] = (size_t)id;
        }
    }
    if (walk_members(&e, root, 1) != 0)
        goto out;
    e.by_path = calloc(e.npaths ? e.npaths : 1, sizeof(idxvec));
    e.assign = malloc((e.narrays ? e.narrays : 1) * sizeof(int64_t));
    if (e.by_path == NULL || e.assign == NULL)
        goto out;
    for (uint32_t a = 0; a < e.narrays; a++)
        e.assign[a] = -1;
    for (size_t l = 0; l < e.nleaves; l++)
        if (idx_push(&e.by_path[e.leaves[l].pathid], l) != 0)
            goto out;

    size_t best_ok = 0;
    size_t best_conj = 0;
    char best_explain[512] = "";
    rc = 0;
    for (size_t i = 0, base = 0; i < p->nconjs && !*matched; base += p->conjs[i].nconds, i++) {
        conj_ctx x = {.cj = &p->conjs[i], .cands = cands + base, .pathid = pathids + base};
        for (size_t j = 0; j < x.cj->nconds; j++) {
            const idxvec *all = &e.by_path[x.pathid[j]];
            for (size_t k = 0; k < all->n; k++) {
                if (cond_match(&x.cj->conds[j], e.leaves[all->v[k]].v, &e.oom) &&
                    idx_push(&x.cands[j], all->v[k]) != 0)
                    e.oom = 1;
            }
        }
        x.words = (e.narrays + 63) / 64;
        x.rel = calloc(x.cj->nconds * (x.words ? x.words : 1), sizeof(uint64_t));
        if (x.rel == NULL) {
            rc = EVBUS_ENOMEM;
            break;
        }
        for (size_t j = x.cj->nconds; j-- > 0;) {
            uint64_t *r = x.rel + j * x.words;
            if (j + 1 < x.cj->nconds)
                memcpy(r, r + x.words, x.words * sizeof(uint64_t));
            const idxvec *all = &e.by_path[x.pathid[j]];
            for (size_t k = 0; k < all->n; k++) {
                const leaf *l = &e.leaves[all->v[k]];
                for (size_t m = 0; m < l->m_n; m++) {
                    uint32_t a = e.pairs[l->m_off + m].arr;
                    r[a / 64] |= 1ull << (a % 64);
                }
            }
        }
        memo_clear(&e.memo);
        *matched = search(&e, &x, 0);
        free(x.rel);
        if (e.oom) {
            rc = EVBUS_ENOMEM;
            *matched = 0;
            break;
        }
        if (!*matched && explain != NULL && explain_len > 0) {
            char buf[512];
            size_t ok = explain_conj(&e, &x, buf, sizeof(buf));
            if (i == 0 || ok > best_ok) {
                best_ok = ok;
                best_conj = i;
                snprintf(best_explain, sizeof(best_explain), "%s", buf);
            }
        }
    }
    if (rc == 0 && !*matched && explain != NULL && explain_len > 0) {
        if (p->nconjs > 1)
            explainf(explain, explain_len,
                     "no $or branch matches; closest is branch %zu of %zu: %s", best_conj + 1,
                     p->nconjs, best_explain);
        else
            explainf(explain, explain_len, "%s", best_explain);
    }
    if (rc == EVBUS_ENOMEM)
        explainf(explain, explain_len, "out of memory");

out:
    if (rc == EVBUS_ENOMEM && e.by_path == NULL)
        explainf(explain, explain_len, "out of memory");
    if (cands != NULL)
        for (size_t i = 0; i < ncond_total; i++)
            free(cands[i].v);
    if (e.by_path != NULL)
        for (size_t i = 0; i < e.npaths; i++)
            free(e.by_path[i].v);
    memo_clear(&e.memo);
    free(cands);
    free(pathids);
    free(e.by_path);
    free(e.assign);
    free(e.undo);
    free(e.paths);
    free(e.leaves);
    free(e.pairs);
    free(e.stack);
    free(e.pbuf);
    json_decref(root);
    return rc;
}
