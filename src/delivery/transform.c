/*
 * delivery/transform: compiles a target's delivery shape (transform.h) and
 * applies it to events.
 *
 * Everything works on JSON *text*, never on a parsed tree: a value is a span of
 * the event, so numbers, escapes and member order reach the target exactly as
 * they were published (a jansson round trip turns 0.1 into 0.10000000000000001
 * and refuses integers beyond 64 bits). jansson only reads the InputPathsMap,
 * whose values are strings.
 *
 * Two JSON readers:
 *  - jv_validate: a strict, iterative RFC 8259 validator (UTF-8 checked,
 *    surrogate pairs checked, depth bounded like jansson's 2048). It checks
 *    Input at compile, JSON templates at compile (with placeholders stood in
 *    for), and every event at apply, before anything walks it.
 *  - js_*: a navigator over text already validated: skip a value, iterate the
 *    members of an object or the elements of an array, compare a member name
 *    (escapes decoded) to a path key. It never checks syntax again.
 *
 * A compiled template is the template text plus a list of segments: literal
 * text [off, off+len), or a placeholder with its variable and its form, fixed
 * at compile from the quote state of the template around it: JSON form (the
 * value as a JSON value) outside quotes of a JSON template, text form (the
 * value's characters, as they sit inside a JSON string) everywhere else.
 * Variables are numbered: the five predefined ones first (PV_*), then the
 * InputPathsMap entries. apply evaluates each variable the template uses once,
 * then concatenates the segments, checking the output bound as it grows.
 *
 * Invariants:
 *  1. A spec is immutable after transform_compile; apply keeps its state on
 *     the stack and in buffers it frees before returning.
 *  2. The navigator only ever runs on text jv_validate accepted, so its loops
 *     need no syntax checks (they still stop at the end of the text).
 *  3. A text-form substitution of a valid JSON value is valid inside a JSON
 *     string (string contents keep their escapes; objects and arrays lose their
 *     whitespace outside strings and their unescaped quotes), and a JSON-form
 *     substitution is a valid JSON value; hence a JSON template that validates
 *     with `null` for each JSON-form placeholder and `x` for each text-form one
 *     (a character that cannot complete an escape the template left open, as in
 *     "\u00<v>") validates after any substitution.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "common/util.h"
#include "delivery/transform.h"
#include "evbus/errors.h"

#define JV_MAX_DEPTH 2048u

enum {
    PV_RULE_ARN,
    PV_RULE_NAME,
    PV_INGESTION_TIME,
    PV_EVENT,
    PV_EVENT_JSON,
    PV_COUNT, /* first InputPathsMap variable */
};

static const char *const predefined_names[PV_COUNT] = {
    "aws.events.rule-arn", "aws.events.rule-name",  "aws.events.event.ingestion-time",
    "aws.events.event",    "aws.events.event.json",
};

typedef enum step_kind { STEP_KEY, STEP_INDEX, STEP_ALL } step_kind;

typedef struct step {
    step_kind kind;
    const char *key; /* STEP_KEY: points into jpath.text */
    size_t key_len;
    long index; /* STEP_INDEX; negative counts from the end */
} step;

typedef struct jpath {
    char *text; /* owned copy of the path */
    step *steps;
    size_t n_steps;
    int wild; /* has a STEP_ALL: the result is an array of matches */
} jpath;

typedef struct tvar {
    char *name;
    jpath path;
} tvar;

typedef struct tseg {
    size_t off, len; /* in spec->text */
    int var;         /* < 0: literal text; else the variable number */
    int json_form;
} tseg;

struct transform_spec {
    transform_kind kind;
    char *text; /* Input, or the template */
    size_t text_len;
    jpath path; /* InputPath */
    tvar *vars;
    size_t n_vars;
    tseg *segs;
    size_t n_segs;
    unsigned char *used; /* PV_COUNT + n_vars flags: the template uses the variable */
};

__attribute__((format(printf, 3, 4))) static void seterr(char *err, size_t err_len, const char *fmt,
                                                         ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the UTF-8 sequence at p (n bytes available); 0 when invalid (overlong, surrogate,
 * above U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

/* Code points of s[0, n); -1 when s is not valid UTF-8. */
static int utf8_chars(const char *s, size_t n, size_t *chars)
{
    size_t count = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const unsigned char *)s + i, n - i);
        if (l == 0)
            return -1;
        i += l;
        count++;
    }
    *chars = count;
    return 0;
}

static size_t utf8_put(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------ validator */

typedef struct jv_error {
    size_t off;
    const char *what;
} jv_error;

/* Called for every member name: [start, end) spans it with its quotes. */
typedef void (*jv_key_fn)(void *ud, size_t start, size_t end);

static int jv_fail(jv_error *e, size_t off, const char *what)
{
    e->off = off;
    e->what = what;
    return -1;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static size_t skip_ws(const char *p, size_t n, size_t i)
{
    while (i < n && is_ws(p[i]))
        i++;
    return i;
}

static int hex4(const char *p, size_t n, size_t i, unsigned *out)
{
    if (i + 4 > n)
        return -1;
    unsigned v = 0;
    for (size_t k = i; k < i + 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* The string at p[*i] == '"'; *i ends past its closing quote. */
static int jv_string(const char *p, size_t n, size_t *i, jv_error *e)
{
    size_t k = *i + 1;
    while (k < n) {
        unsigned char c = (unsigned char)p[k];
        if (c == '"') {
            *i = k + 1;
            return 0;
        }
        if (c < 0x20)
            return jv_fail(e, k, "control character in a string");
        if (c == '\\') {
            if (k + 1 >= n)
                break;
            char x = p[k + 1];
            if (x == 'u') {
                unsigned cp, lo;
                if (hex4(p, n, k + 2, &cp) != 0)
                    return jv_fail(e, k, "bad \\u escape");
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return jv_fail(e, k, "unpaired surrogate in a \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (k + 12 > n || p[k + 6] != '\\' || p[k + 7] != 'u' ||
                        hex4(p, n, k + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return jv_fail(e, k, "unpaired surrogate in a \\u escape");
                    k += 6;
                }
                k += 6;
                continue;
            }
            if (x != '"' && x != '\\' && x != '/' && x != 'b' && x != 'f' && x != 'n' && x != 'r' &&
                x != 't')
                return jv_fail(e, k, "bad escape in a string");
            k += 2;
            continue;
        }
        if (c < 0x80) {
            k++;
            continue;
        }
        size_t l = utf8_seq((const unsigned char *)p + k, n - k);
        if (l == 0)
            return jv_fail(e, k, "invalid UTF-8");
        k += l;
    }
    return jv_fail(e, *i, "unterminated string");
}

static int jv_number(const char *p, size_t n, size_t *i, jv_error *e)
{
    size_t k = *i;
    if (k < n && p[k] == '-')
        k++;
    if (k >= n || !is_digit(p[k]))
        return jv_fail(e, *i, "bad number");
    if (p[k] == '0')
        k++;
    else
        while (k < n && is_digit(p[k]))
            k++;
    if (k < n && p[k] == '.') {
        k++;
        if (k >= n || !is_digit(p[k]))
            return jv_fail(e, *i, "bad number");
        while (k < n && is_digit(p[k]))
            k++;
    }
    if (k < n && (p[k] == 'e' || p[k] == 'E')) {
        k++;
        if (k < n && (p[k] == '+' || p[k] == '-'))
            k++;
        if (k >= n || !is_digit(p[k]))
            return jv_fail(e, *i, "bad number");
        while (k < n && is_digit(p[k]))
            k++;
    }
    *i = k;
    return 0;
}

/* A member name, its ':' and the blanks after it. */
static int jv_key(const char *p, size_t n, size_t *i, jv_key_fn fn, void *ud, jv_error *e)
{
    size_t start = *i;
    if (start >= n || p[start] != '"')
        return jv_fail(e, start, "expected a member name");
    if (jv_string(p, n, i, e) != 0)
        return -1;
    if (fn != NULL)
        fn(ud, start, *i);
    *i = skip_ws(p, n, *i);
    if (*i >= n || p[*i] != ':')
        return jv_fail(e, *i, "expected ':'");
    *i = skip_ws(p, n, *i + 1);
    return 0;
}

/* Checks that p[0, n) is exactly one JSON value with optional blanks around it. */
static int jv_validate(const char *p, size_t n, jv_key_fn fn, void *ud, jv_error *e)
{
    unsigned char stack[JV_MAX_DEPTH];
    size_t depth = 0;
    size_t i = skip_ws(p, n, 0);
    int have_value = 0;
    for (;;) {
        if (!have_value) {
            if (i >= n)
                return jv_fail(e, i, "expected a value");
            char c = p[i];
            if (c == '{' || c == '[') {
                if (depth == JV_MAX_DEPTH)
                    return jv_fail(e, i, "nesting too deep");
                stack[depth++] = (unsigned char)c;
                i = skip_ws(p, n, i + 1);
                if (i < n && p[i] == (c == '{' ? '}' : ']')) {
                    depth--;
                    i++;
                    have_value = 1;
                } else if (c == '{' && jv_key(p, n, &i, fn, ud, e) != 0) {
                    return -1;
                }
                continue;
            }
            if (c == '"') {
                if (jv_string(p, n, &i, e) != 0)
                    return -1;
            } else if (c == '-' || is_digit(c)) {
                if (jv_number(p, n, &i, e) != 0)
                    return -1;
            } else if (n - i >= 4 &&
                       (memcmp(p + i, "true", 4) == 0 || memcmp(p + i, "null", 4) == 0)) {
                i += 4;
            } else if (n - i >= 5 && memcmp(p + i, "false", 5) == 0) {
                i += 5;
            } else {
                return jv_fail(e, i, "expected a value");
            }
            have_value = 1;
        }
        i = skip_ws(p, n, i);
        if (depth == 0)
            return i == n ? 0 : jv_fail(e, i, "unexpected text after the JSON value");
        char close = stack[depth - 1] == '{' ? '}' : ']';
        if (i < n && p[i] == ',') {
            i = skip_ws(p, n, i + 1);
            if (stack[depth - 1] == '{' && jv_key(p, n, &i, fn, ud, e) != 0)
                return -1;
            have_value = 0;
        } else if (i < n && p[i] == close) {
            depth--;
            i++;
        } else {
            return jv_fail(e, i, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
}

/* ------------------------------------------------------------------ navigator (valid text) */

static size_t js_skip_string(const char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return n;
}

/* End of the value that starts at p[i]. */
static size_t js_skip(const char *p, size_t n, size_t i)
{
    char c = p[i];
    if (c == '"')
        return js_skip_string(p, n, i);
    if (c == '{' || c == '[') {
        size_t depth = 0;
        while (i < n) {
            c = p[i];
            if (c == '"') {
                i = js_skip_string(p, n, i);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return n;
    }
    while (i < n && !is_ws(p[i]) && p[i] != ',' && p[i] != '}' && p[i] != ']')
        i++;
    return i;
}

/*
 * Next member of the object (or element of the array) whose body *i is in:
 * start with *i just past the opening bracket. Object members give the name
 * span (with quotes) in key; arrays leave key untouched. 0 at the end.
 */
static int js_next(const char *p, size_t n, size_t *i, int object, size_t *ks, size_t *ke,
                   size_t *vs, size_t *ve)
{
    size_t k = skip_ws(p, n, *i);
    if (k >= n || p[k] == '}' || p[k] == ']')
        return 0;
    if (p[k] == ',')
        k = skip_ws(p, n, k + 1);
    if (object) {
        *ks = k;
        k = js_skip_string(p, n, k);
        *ke = k;
        k = skip_ws(p, n, k);
        k = skip_ws(p, n, k + 1); /* the ':' */
    }
    *vs = k;
    *ve = js_skip(p, n, k);
    *i = *ve;
    return 1;
}

/* Whether the member name content k[0, kn) (escaped as written) decodes to name[0, nn). */
static int key_eq(const char *k, size_t kn, const char *name, size_t nn)
{
    if (memchr(k, '\\', kn) == NULL)
        return kn == nn && memcmp(k, name, nn) == 0;
    size_t a = 0, b = 0;
    while (a < kn) {
        unsigned char buf[4];
        size_t bl = 1;
        if (k[a] != '\\') {
            buf[0] = (unsigned char)k[a++];
        } else {
            char x = a + 1 < kn ? k[a + 1] : '\\';
            a += 2;
            switch (x) {
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u': {
                unsigned cp = 0, lo = 0;
                if (hex4(k, kn, a, &cp) != 0)
                    return 0;
                a += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && hex4(k, kn, a + 2, &lo) == 0) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    a += 6;
                }
                bl = utf8_put(buf, cp);
                break;
            }
            default: buf[0] = (unsigned char)x; break;
            }
        }
        if (b + bl > nn || memcmp(name + b, buf, bl) != 0)
            return 0;
        b += bl;
    }
    return b == nn;
}

/* The value of the last member called name[0, nn) of the object at p[obj]. */
static int js_member(const char *p, size_t n, size_t obj, const char *name, size_t nn, size_t *vs,
                     size_t *ve)
{
    size_t i = obj + 1, ks, ke, s, e;
    int found = 0;
    while (js_next(p, n, &i, 1, &ks, &ke, &s, &e)) {
        if (key_eq(p + ks + 1, ke - ks - 2, name, nn)) {
            *vs = s;
            *ve = e;
            found = 1;
        }
    }
    return found;
}

/* Element `index` of the array at p[arr]; a negative index counts from the end. */
static int js_element(const char *p, size_t n, size_t arr, long index, size_t *vs, size_t *ve)
{
    size_t i, s, e, unused = 0;
    if (index < 0) {
        long count = 0;
        i = arr + 1;
        while (js_next(p, n, &i, 0, &unused, &unused, &s, &e))
            count++;
        index += count;
        if (index < 0)
            return 0;
    }
    long at = 0;
    i = arr + 1;
    while (js_next(p, n, &i, 0, &unused, &unused, &s, &e)) {
        if (at++ == index) {
            *vs = s;
            *ve = e;
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ output helpers */

/* util_buf_append with nothing to add would memcpy to a NULL buffer. */
static int buf_add(util_buf *b, const void *p, size_t n)
{
    return n == 0 ? 0 : util_buf_append(b, p, n);
}

static int buf_str(util_buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

/* JSON text p[0, n) (valid) without blanks outside strings and, with drop_quotes, without the
 * quotes that delimit strings (escaped quotes stay escaped). */
static int emit_compact(util_buf *b, const char *p, size_t n, int drop_quotes)
{
    if (n == 0)
        return 0;
    int rv = util_buf_reserve(b, n);
    if (rv != 0)
        return rv;
    char *o = (char *)b->data + b->len;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\' && i + 1 < n) {
                *o++ = c;
                *o++ = p[++i];
                continue;
            }
            if (c == '"') {
                in_str = 0;
                if (drop_quotes)
                    continue;
            }
            *o++ = c;
        } else if (!is_ws(c)) {
            if (c == '"') {
                in_str = 1;
                if (drop_quotes)
                    continue;
            }
            *o++ = c;
        }
    }
    b->len = (size_t)(o - (char *)b->data);
    return 0;
}

/* s[0, n) (valid UTF-8) as a JSON string literal. */
static int emit_json_string(util_buf *b, const char *s, size_t n)
{
    int rv = buf_add(b, "\"", 1);
    for (size_t i = 0; i < n && rv == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            rv = buf_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            rv = buf_add(b, esc, 6);
        } else {
            rv = buf_add(b, &s[i], 1);
        }
    }
    return rv != 0 ? rv : buf_add(b, "\"", 1);
}

/* ------------------------------------------------------------------ JSONPath */

static int path_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '-' || c == '/';
}

static void jpath_free(jpath *jp)
{
    free(jp->text);
    free(jp->steps);
    jp->text = NULL;
    jp->steps = NULL;
    jp->n_steps = 0;
    jp->wild = 0;
}

/* Compiles `s`; `what` names it in messages ("InputPath", "InputPathsMap \"x\""). */
static int jpath_compile(const char *s, const char *what, jpath *jp, char *err, size_t err_len)
{
    size_t len = strlen(s), chars = 0;
    memset(jp, 0, sizeof(*jp));
    if (utf8_chars(s, len, &chars) != 0) {
        seterr(err, err_len, "%s: the JSONPath is not valid UTF-8", what);
        return EVBUS_EINVAL;
    }
    if (chars == 0) {
        seterr(err, err_len, "%s: the JSONPath is empty", what);
        return EVBUS_EINVAL;
    }
    if (chars > TRANSFORM_MAX_PATH_CHARS) {
        seterr(err, err_len, "%s: the JSONPath has %zu characters, more than %u", what, chars,
               TRANSFORM_MAX_PATH_CHARS);
        return EVBUS_ETOOBIG;
    }
    jp->text = strdup(s);
    jp->steps = calloc(len, sizeof(step)); /* at most one step per two characters */
    if (jp->text == NULL || jp->steps == NULL) {
        jpath_free(jp);
        seterr(err, err_len, "out of memory");
        return EVBUS_ENOMEM;
    }
    const char *t = jp->text;
    const char *why = NULL;
    size_t i = 0;
    if (t[0] != '$') {
        why = "a JSONPath starts with '$'";
        goto bad;
    }
    for (i = 1; i < len;) {
        step *st = &jp->steps[jp->n_steps];
        if (t[i] == '.') {
            i++;
            if (i < len && t[i] == '.') {
                why = "deep scan (..) is not supported";
                goto bad;
            }
            if (i < len && t[i] == '*') {
                st->kind = STEP_ALL;
                jp->wild = 1;
                i++;
            } else {
                size_t start = i;
                while (i < len && path_name_char(t[i]))
                    i++;
                if (i == start) {
                    why = i < len ? "a member name is made of A-Z a-z 0-9 _ - / (use ['name'] "
                                    "for other characters)"
                                  : "the path ends with '.'";
                    goto bad;
                }
                st->kind = STEP_KEY;
                st->key = t + start;
                st->key_len = i - start;
            }
        } else if (t[i] == '[') {
            i++;
            if (i < len && t[i] == '*') {
                st->kind = STEP_ALL;
                jp->wild = 1;
                i++;
            } else if (i < len && (t[i] == '\'' || t[i] == '"')) {
                char q = t[i++];
                size_t start = i;
                while (i < len && t[i] != q)
                    i++;
                if (i == len) {
                    why = "unterminated quoted member name";
                    goto bad;
                }
                st->kind = STEP_KEY;
                st->key = t + start;
                st->key_len = i - start;
                i++;
            } else if (i < len && (t[i] == '-' || is_digit(t[i]))) {
                size_t start = i;
                if (t[i] == '-')
                    i++;
                long v = 0;
                size_t digits = 0;
                while (i < len && is_digit(t[i])) {
                    if (++digits > 9) {
                        why = "array index too large";
                        goto bad;
                    }
                    v = v * 10 + (t[i++] - '0');
                }
                if (digits == 0) {
                    i = start;
                    why = "bad array index";
                    goto bad;
                }
                st->kind = STEP_INDEX;
                st->index = t[start] == '-' ? -v : v;
            } else {
                why = "unsupported bracket expression (filters, slices, unions and scripts are not "
                      "supported)";
                goto bad;
            }
            if (i >= len || t[i] != ']') {
                why = i < len && (t[i] == ':' || t[i] == ',')
                          ? "slices and unions are not supported"
                          : "expected ']'";
                goto bad;
            }
            i++;
        } else {
            why = "expected '.' or '['";
            goto bad;
        }
        jp->n_steps++;
    }
    return 0;
bad:
    seterr(err, err_len, "%s: invalid JSONPath \"%s\": %s (offset %zu)", what, t, why, i);
    jpath_free(jp);
    return EVBUS_EINVAL;
}

/* A definite path: the span it selects in the event, if any. */
static int jpath_get(const jpath *jp, const char *ev, size_t n, size_t root, size_t *vs, size_t *ve)
{
    size_t s = root, e = js_skip(ev, n, root);
    for (size_t k = 0; k < jp->n_steps; k++) {
        const step *st = &jp->steps[k];
        if (st->kind == STEP_KEY) {
            if (ev[s] != '{' || !js_member(ev, n, s, st->key, st->key_len, &s, &e))
                return 0;
        } else if (ev[s] != '[' || !js_element(ev, n, s, st->index, &s, &e)) {
            return 0;
        }
    }
    *vs = s;
    *ve = e;
    return 1;
}

/* An indefinite path from step k on at the value ev[s, e): every match, minified, appended to
 * b (comma-separated). */
static int jpath_collect(const jpath *jp, size_t k, const char *ev, size_t n, size_t s, size_t e,
                         util_buf *b, size_t *count)
{
    if (k == jp->n_steps) {
        int rv = *count > 0 ? buf_add(b, ",", 1) : 0;
        (*count)++;
        return rv != 0 ? rv : emit_compact(b, ev + s, e - s, 0);
    }
    const step *st = &jp->steps[k];
    size_t vs, ve;
    if (st->kind == STEP_KEY) {
        if (ev[s] == '{' && js_member(ev, n, s, st->key, st->key_len, &vs, &ve))
            return jpath_collect(jp, k + 1, ev, n, vs, ve, b, count);
        return 0;
    }
    if (st->kind == STEP_INDEX) {
        if (ev[s] == '[' && js_element(ev, n, s, st->index, &vs, &ve))
            return jpath_collect(jp, k + 1, ev, n, vs, ve, b, count);
        return 0;
    }
    if (ev[s] != '{' && ev[s] != '[')
        return 0;
    size_t i = s + 1, ks, ke;
    while (js_next(ev, n, &i, ev[s] == '{', &ks, &ke, &vs, &ve)) {
        int rv = jpath_collect(jp, k + 1, ev, n, vs, ve, b, count);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* ------------------------------------------------------------------ values */

/* A variable's value for one event: JSON text (a string keeps its quotes), or not found. */
typedef struct tval {
    int found;
    const char *p;
    size_t n;
} tval;

static int value_is_container(const tval *v)
{
    return v->p[0] == '{' || v->p[0] == '[';
}

/* The value outside quotes of a JSON template. */
static int emit_json_form(util_buf *b, const tval *v)
{
    if (!v->found)
        return buf_add(b, "\"\"", 2);
    if (value_is_container(v))
        return emit_compact(b, v->p, v->n, 0);
    return buf_add(b, v->p, v->n);
}

/* The value inside quotes, or in a string template. */
static int emit_text_form(util_buf *b, const tval *v)
{
    if (!v->found)
        return 0;
    if (v->p[0] == '"')
        return buf_add(b, v->p + 1, v->n - 2);
    if (value_is_container(v))
        return emit_compact(b, v->p, v->n, 1);
    return buf_add(b, v->p, v->n);
}

/* Evaluates a path on the event: a span of it, or (wildcards) an array built in `own`. */
static int eval_path(const jpath *jp, const char *ev, size_t n, size_t root, util_buf *own, tval *v)
{
    size_t vs, ve;
    if (!jp->wild) {
        if (jpath_get(jp, ev, n, root, &vs, &ve)) {
            v->found = 1;
            v->p = ev + vs;
            v->n = ve - vs;
        }
        return 0;
    }
    size_t count = 0;
    int rv = buf_add(own, "[", 1);
    if (rv == 0)
        rv = jpath_collect(jp, 0, ev, n, root, js_skip(ev, n, root), own, &count);
    if (rv == 0)
        rv = buf_add(own, "]", 1);
    if (rv != 0)
        return rv;
    v->found = 1;
    v->p = (const char *)own->data;
    v->n = own->len;
    return 0;
}

/* The members of aws.events.event that AWS emits first, in its order (detail-type renamed). */
static const char *const event_known_members[] = {
    "id", "account", "detail-type", "time", "source", "region", "resources", "version",
};
#define N_EVENT_KNOWN (sizeof(event_known_members) / sizeof(event_known_members[0]))

static int member_is_known(const char *k, size_t kn)
{
    if (key_eq(k, kn, "detail", 6))
        return 1;
    for (size_t j = 0; j < N_EVENT_KNOWN; j++)
        if (key_eq(k, kn, event_known_members[j], strlen(event_known_members[j])))
            return 1;
    return 0;
}

/* aws.events.event: the event object without "detail". */
static int build_event_without_detail(const char *ev, size_t n, size_t root, util_buf *b)
{
    int rv = buf_add(b, "{", 1);
    int first = 1;
    size_t vs, ve, ks, ke;
    for (size_t j = 0; j < N_EVENT_KNOWN && rv == 0; j++) {
        const char *name = event_known_members[j];
        if (!js_member(ev, n, root, name, strlen(name), &vs, &ve))
            continue;
        if (!first)
            rv = buf_add(b, ",", 1);
        first = 0;
        if (rv == 0)
            rv = buf_add(b, "\"", 1);
        if (rv == 0)
            rv = buf_str(b, strcmp(name, "detail-type") == 0 ? "detailType" : name);
        if (rv == 0)
            rv = buf_add(b, "\":", 2);
        if (rv == 0)
            rv = emit_compact(b, ev + vs, ve - vs, 0);
    }
    /* Other members in event order; of a name written twice, the last one. */
    size_t i = root + 1;
    while (rv == 0 && js_next(ev, n, &i, 1, &ks, &ke, &vs, &ve)) {
        if (member_is_known(ev + ks + 1, ke - ks - 2))
            continue;
        size_t i2 = ve, ks2, ke2, vs2, ve2;
        int later = 0;
        while (!later && js_next(ev, n, &i2, 1, &ks2, &ke2, &vs2, &ve2))
            later = ke2 - ks2 == ke - ks && memcmp(ev + ks2, ev + ks, ke - ks) == 0;
        if (later)
            continue;
        if (!first)
            rv = buf_add(b, ",", 1);
        first = 0;
        if (rv == 0)
            rv = buf_add(b, ev + ks, ke - ks);
        if (rv == 0)
            rv = buf_add(b, ":", 1);
        if (rv == 0)
            rv = emit_compact(b, ev + vs, ve - vs, 0);
    }
    return rv != 0 ? rv : buf_add(b, "}", 1);
}

static int ctx_string(const char *s, const char *what, util_buf *own, tval *v, char *err,
                      size_t err_len)
{
    size_t chars;
    if (s == NULL)
        s = "";
    if (utf8_chars(s, strlen(s), &chars) != 0) {
        seterr(err, err_len, "%s is not valid UTF-8", what);
        return EVBUS_EINVAL;
    }
    int rv = emit_json_string(own, s, strlen(s));
    if (rv != 0)
        return rv;
    v->found = 1;
    v->p = (const char *)own->data;
    v->n = own->len;
    return 0;
}

/* ------------------------------------------------------------------ compile */

void transform_spec_free(transform_spec *spec)
{
    if (spec == NULL)
        return;
    for (size_t i = 0; i < spec->n_vars; i++) {
        free(spec->vars[i].name);
        jpath_free(&spec->vars[i].path);
    }
    free(spec->vars);
    free(spec->segs);
    free(spec->used);
    jpath_free(&spec->path);
    free(spec->text);
    free(spec);
}

transform_kind transform_spec_kind(const transform_spec *spec)
{
    return spec->kind;
}

static int copy_text(transform_spec *spec, const char *s, size_t len)
{
    spec->text = malloc(len + 1);
    if (spec->text == NULL)
        return EVBUS_ENOMEM;
    memcpy(spec->text, s, len + 1);
    spec->text_len = len;
    return 0;
}

static int compile_input(transform_spec *spec, const char *input, char *err, size_t err_len)
{
    size_t len = strlen(input), chars;
    jv_error je;
    if (utf8_chars(input, len, &chars) != 0) {
        seterr(err, err_len, "Input is not valid UTF-8");
        return EVBUS_EINVAL;
    }
    if (chars > TRANSFORM_MAX_INPUT_CHARS) {
        seterr(err, err_len, "Input has %zu characters, more than %u", chars,
               TRANSFORM_MAX_INPUT_CHARS);
        return EVBUS_ETOOBIG;
    }
    if (jv_validate(input, len, NULL, NULL, &je) != 0) {
        seterr(err, err_len, "Input is not a valid JSON text: %s at offset %zu", je.what, je.off);
        return EVBUS_EINVAL;
    }
    spec->kind = TRANSFORM_INPUT;
    return copy_text(spec, input, len);
}

static int check_name(const char *name, char *err, size_t err_len)
{
    size_t len = strlen(name), chars;
    if (len == 0) {
        seterr(err, err_len, "InputPathsMap: a variable name is empty");
        return EVBUS_EINVAL;
    }
    if (strncasecmp(name, "aws.", 4) == 0) {
        seterr(err, err_len,
               "InputPathsMap: variable name \"%.64s\" is reserved (names starting with \"aws.\" "
               "belong to the predefined variables)",
               name);
        return EVBUS_EINVAL;
    }
    if (utf8_chars(name, len, &chars) == 0 && chars > TRANSFORM_MAX_NAME_CHARS) {
        seterr(err, err_len,
               "InputPathsMap: variable name \"%.64s...\" has %zu characters, more "
               "than %u",
               name, chars, TRANSFORM_MAX_NAME_CHARS);
        return EVBUS_ETOOBIG;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
              c == '-')) {
            seterr(err, err_len,
                   "InputPathsMap: variable name \"%.64s\" has an invalid character at offset "
                   "%zu (names are made of A-Z a-z 0-9 _ -)",
                   name, i);
            return EVBUS_EINVAL;
        }
    }
    return 0;
}

static int compile_paths_map(transform_spec *spec, const char *map, char *err, size_t err_len)
{
    json_error_t je;
    json_t *m = json_loads(map, JSON_REJECT_DUPLICATES, &je);
    int rv = 0;
    if (m == NULL) {
        seterr(err, err_len, "InputPathsMap is not valid JSON: %s (line %d, column %d)", je.text,
               je.line, je.column);
        return EVBUS_EINVAL;
    }
    if (!json_is_object(m)) {
        seterr(err, err_len, "InputPathsMap must be a JSON object of variable name -> JSONPath");
        rv = EVBUS_EINVAL;
        goto out;
    }
    size_t count = json_object_size(m);
    if (count > TRANSFORM_MAX_PATHS) {
        seterr(err, err_len, "InputPathsMap has %zu variables, more than %u", count,
               TRANSFORM_MAX_PATHS);
        rv = EVBUS_ETOOBIG;
        goto out;
    }
    spec->vars = calloc(count ? count : 1, sizeof(tvar));
    if (spec->vars == NULL) {
        rv = EVBUS_ENOMEM;
        goto out;
    }
    const char *name;
    json_t *value;
    json_object_foreach(m, name, value)
    {
        char what[96];
        if ((rv = check_name(name, err, err_len)) != 0)
            goto out;
        snprintf(what, sizeof(what), "InputPathsMap \"%.64s\"", name);
        if (!json_is_string(value)) {
            seterr(err, err_len, "%s: the value must be a string (a JSONPath)", what);
            rv = EVBUS_EINVAL;
            goto out;
        }
        tvar *v = &spec->vars[spec->n_vars];
        if ((rv = jpath_compile(json_string_value(value), what, &v->path, err, err_len)) != 0)
            goto out;
        spec->n_vars++;
        if ((v->name = strdup(name)) == NULL) {
            rv = EVBUS_ENOMEM;
            goto out;
        }
    }
out:
    json_decref(m);
    if (rv == EVBUS_ENOMEM)
        seterr(err, err_len, "out of memory");
    return rv;
}

static int template_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '-' || c == '.';
}

static int find_var(const transform_spec *spec, const char *name, size_t len)
{
    for (int k = 0; k < PV_COUNT; k++)
        if (strlen(predefined_names[k]) == len && memcmp(predefined_names[k], name, len) == 0)
            return k;
    for (size_t j = 0; j < spec->n_vars; j++)
        if (strlen(spec->vars[j].name) == len && memcmp(spec->vars[j].name, name, len) == 0)
            return PV_COUNT + (int)j;
    return -1;
}

static int add_seg(transform_spec *spec, size_t *cap, size_t off, size_t len, int var,
                   int json_form)
{
    if (var < 0 && len == 0)
        return 0;
    if (spec->n_segs == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        tseg *ns = realloc(spec->segs, ncap * sizeof(tseg));
        if (ns == NULL)
            return EVBUS_ENOMEM;
        spec->segs = ns;
        *cap = ncap;
    }
    spec->segs[spec->n_segs++] = (tseg){.off = off, .len = len, .var = var, .json_form = json_form};
    return 0;
}

/* Finds text-form placeholders inside member names of the probe (jv_key_fn). */
typedef struct key_check {
    const tseg *segs;
    const size_t *probe_off;
    size_t n, cur;
    long bad; /* segment index of a placeholder inside a name, or -1 */
} key_check;

static void key_check_fn(void *ud, size_t start, size_t end)
{
    key_check *kc = ud;
    if (kc->bad >= 0)
        return;
    while (kc->cur < kc->n && (kc->segs[kc->cur].var < 0 || kc->segs[kc->cur].json_form ||
                               kc->probe_off[kc->cur] <= start))
        kc->cur++;
    if (kc->cur < kc->n && kc->probe_off[kc->cur] < end)
        kc->bad = (long)kc->cur;
}

/*
 * A JSON template must be valid JSON with `null` for each JSON-form
 * placeholder and `x` for each text-form one (invariant 3), and no
 * placeholder may sit in a member name.
 */
static int check_json_template(const transform_spec *spec, char *err, size_t err_len)
{
    util_buf probe = {0};
    size_t *probe_off = calloc(spec->n_segs ? spec->n_segs : 1, sizeof(size_t));
    jv_error je;
    int rv = probe_off == NULL ? EVBUS_ENOMEM : 0;
    for (size_t k = 0; k < spec->n_segs && rv == 0; k++) {
        const tseg *s = &spec->segs[k];
        probe_off[k] = probe.len;
        if (s->var < 0)
            rv = buf_add(&probe, spec->text + s->off, s->len);
        else
            rv = s->json_form ? buf_add(&probe, "null", 4) : buf_add(&probe, "x", 1);
    }
    if (rv != 0) {
        seterr(err, err_len, "out of memory");
        goto out;
    }
    key_check kc = {.segs = spec->segs, .probe_off = probe_off, .n = spec->n_segs, .bad = -1};
    if (jv_validate((const char *)probe.data, probe.len, key_check_fn, &kc, &je) != 0) {
        /* Back from the probe to the template: the segment the error is in. */
        size_t off = spec->text_len;
        for (size_t k = 0; k < spec->n_segs; k++) {
            const tseg *s = &spec->segs[k];
            size_t plen = s->var < 0 ? s->len : s->json_form ? 4 : 1;
            if (je.off < probe_off[k] || je.off >= probe_off[k] + plen)
                continue;
            if (s->var >= 0 && s->json_form) {
                seterr(err, err_len,
                       "InputTemplate is not valid JSON: placeholder %.*s at offset %zu is not "
                       "in a value position (a placeholder cannot be an object key)",
                       (int)s->len, spec->text + s->off, s->off);
                rv = EVBUS_EINVAL;
                goto out;
            }
            off = s->off + (je.off - probe_off[k]);
            break;
        }
        seterr(err, err_len, "InputTemplate is not valid JSON: %s at offset %zu", je.what, off);
        rv = EVBUS_EINVAL;
        goto out;
    }
    if (kc.bad >= 0) {
        const tseg *s = &spec->segs[kc.bad];
        seterr(err, err_len,
               "InputTemplate: placeholder %.*s at offset %zu is inside an object key (a "
               "placeholder cannot be an object key)",
               (int)s->len, spec->text + s->off, s->off);
        rv = EVBUS_EINVAL;
    }
out:
    util_buf_free(&probe);
    free(probe_off);
    return rv;
}

static int compile_template(transform_spec *spec, const char *tpl, char *err, size_t err_len)
{
    size_t len = strlen(tpl), chars, cap = 0;
    if (utf8_chars(tpl, len, &chars) != 0) {
        seterr(err, err_len, "InputTemplate is not valid UTF-8");
        return EVBUS_EINVAL;
    }
    if (chars == 0) {
        seterr(err, err_len, "InputTemplate is empty");
        return EVBUS_EINVAL;
    }
    if (chars > TRANSFORM_MAX_TEMPLATE_CHARS) {
        seterr(err, err_len, "InputTemplate has %zu characters, more than %u", chars,
               TRANSFORM_MAX_TEMPLATE_CHARS);
        return EVBUS_ETOOBIG;
    }
    if (copy_text(spec, tpl, len) != 0 || (spec->used = calloc(PV_COUNT + spec->n_vars, 1)) == NULL)
        goto nomem;
    size_t first = skip_ws(tpl, len, 0);
    int json = first < len && (tpl[first] == '{' || tpl[first] == '[');
    spec->kind = json ? TRANSFORM_TEMPLATE_JSON : TRANSFORM_TEMPLATE_TEXT;

    int in_str = 0;
    size_t lit = 0, i = 0;
    while (i < len) {
        char c = tpl[i];
        if (c == '<') {
            size_t j = i + 1;
            while (j < len && template_name_char(tpl[j]))
                j++;
            if (j > i + 1 && j < len && tpl[j] == '>') {
                int var = find_var(spec, tpl + i + 1, j - i - 1);
                int json_form = json && !in_str;
                if (var < 0) {
                    seterr(err, err_len, "InputTemplate contains invalid placeholder %.*s.",
                           (int)(j - i - 1), tpl + i + 1);
                    return EVBUS_EINVAL;
                }
                if ((var == PV_EVENT || var == PV_EVENT_JSON) && !json_form) {
                    seterr(err, err_len,
                           "InputTemplate: <%s> at offset %zu can only be used as the value of "
                           "a JSON field, not inside quotes or in a string template",
                           predefined_names[var], i);
                    return EVBUS_EINVAL;
                }
                if (add_seg(spec, &cap, lit, i - lit, -1, 0) != 0 ||
                    add_seg(spec, &cap, i, j + 1 - i, var, json_form) != 0)
                    goto nomem;
                spec->used[var] = 1;
                i = lit = j + 1;
                continue;
            }
        }
        if (json) {
            if (in_str && c == '\\') {
                i += 2;
                continue;
            }
            if (c == '"')
                in_str = !in_str;
        }
        i++;
    }
    if (add_seg(spec, &cap, lit, len - lit, -1, 0) != 0)
        goto nomem;
    return json ? check_json_template(spec, err, err_len) : 0;
nomem:
    seterr(err, err_len, "out of memory");
    return EVBUS_ENOMEM;
}

int transform_compile(const transform_config *cfg, transform_spec **out, char *err, size_t err_len)
{
    *out = NULL;
    seterr(err, err_len, "%s", "");
    int transformer = cfg->input_paths_map != NULL || cfg->input_template != NULL;
    if ((cfg->input != NULL) + (cfg->input_path != NULL) + transformer > 1) {
        seterr(err, err_len, "Only one of Input, InputPath, or InputTransformer must be provided.");
        return EVBUS_EINVAL;
    }
    if (cfg->input_paths_map != NULL && cfg->input_template == NULL) {
        seterr(err, err_len, "InputTransformer: InputTemplate is required");
        return EVBUS_EINVAL;
    }
    transform_spec *spec = calloc(1, sizeof(*spec));
    if (spec == NULL) {
        seterr(err, err_len, "out of memory");
        return EVBUS_ENOMEM;
    }
    int rv = 0;
    spec->kind = TRANSFORM_EVENT;
    if (cfg->input != NULL) {
        rv = compile_input(spec, cfg->input, err, err_len);
    } else if (cfg->input_path != NULL) {
        spec->kind = TRANSFORM_INPUT_PATH;
        rv = jpath_compile(cfg->input_path, "InputPath", &spec->path, err, err_len);
    } else if (transformer) {
        if (cfg->input_paths_map != NULL)
            rv = compile_paths_map(spec, cfg->input_paths_map, err, err_len);
        if (rv == 0)
            rv = compile_template(spec, cfg->input_template, err, err_len);
    }
    if (rv != 0) {
        if (rv == EVBUS_ENOMEM)
            seterr(err, err_len, "out of memory");
        transform_spec_free(spec);
        return rv;
    }
    *out = spec;
    return 0;
}

/* ------------------------------------------------------------------ apply */

static int copy_out(const char *p, size_t n, size_t max, char **out, size_t *out_len, char *err,
                    size_t err_len)
{
    if (n > max) {
        seterr(err, err_len, "the payload has %zu bytes, more than %zu", n, max);
        return EVBUS_ETOOBIG;
    }
    char *o = malloc(n + 1);
    if (o == NULL) {
        seterr(err, err_len, "out of memory");
        return EVBUS_ENOMEM;
    }
    memcpy(o, p, n);
    o[n] = '\0';
    *out = o;
    *out_len = n;
    return 0;
}

/* Values of the predefined variables the template uses. */
static int eval_predefined(int var, const char *ev, size_t n, size_t root, const transform_ctx *ctx,
                           util_buf *own, tval *v, char *err, size_t err_len)
{
    switch (var) {
    case PV_RULE_ARN:
        return ctx_string(ctx ? ctx->rule_arn : NULL, "rule ARN", own, v, err, err_len);
    case PV_RULE_NAME:
        return ctx_string(ctx ? ctx->rule_name : NULL, "rule name", own, v, err, err_len);
    case PV_INGESTION_TIME: {
        size_t vs, ve;
        if (ctx != NULL && ctx->ingestion_time_ms != 0) {
            char ts[40];
            util_rfc3339(ctx->ingestion_time_ms, ts, sizeof(ts));
            return ctx_string(ts, "ingestion time", own, v, err, err_len);
        }
        if (js_member(ev, n, root, "time", 4, &vs, &ve) && ev[vs] == '"') {
            v->found = 1;
            v->p = ev + vs;
            v->n = ve - vs;
            return 0;
        }
        return ctx_string("", "ingestion time", own, v, err, err_len);
    }
    case PV_EVENT: {
        int rv = build_event_without_detail(ev, n, root, own);
        if (rv != 0)
            return rv;
        v->found = 1;
        v->p = (const char *)own->data;
        v->n = own->len;
        return 0;
    }
    default: /* PV_EVENT_JSON */
        v->found = 1;
        v->p = ev + root;
        v->n = js_skip(ev, n, root) - root;
        return 0;
    }
}

int transform_apply(const transform_spec *spec, const char *event, size_t event_len,
                    const transform_ctx *ctx, char **out, size_t *out_len, char *err,
                    size_t err_len)
{
    size_t max = ctx != NULL && ctx->max_out_bytes != 0 ? ctx->max_out_bytes
                                                        : TRANSFORM_DEFAULT_MAX_OUTPUT_BYTES;
    *out = NULL;
    *out_len = 0;
    seterr(err, err_len, "%s", "");
    if (spec->kind == TRANSFORM_EVENT)
        return copy_out(event, event_len, max, out, out_len, err, err_len);
    if (spec->kind == TRANSFORM_INPUT)
        return copy_out(spec->text, spec->text_len, max, out, out_len, err, err_len);

    jv_error je;
    if (jv_validate(event, event_len, NULL, NULL, &je) != 0) {
        seterr(err, err_len, "the event is not valid JSON: %s at offset %zu", je.what, je.off);
        return EVBUS_EINVAL;
    }
    size_t root = skip_ws(event, event_len, 0);
    if (event[root] != '{') {
        seterr(err, err_len, "the event is not a JSON object");
        return EVBUS_EINVAL;
    }

    util_buf b = {0};
    int rv = 0;
    size_t n_vals = spec->kind == TRANSFORM_INPUT_PATH ? 1 : PV_COUNT + spec->n_vars;
    tval *vals = calloc(n_vals, sizeof(tval));
    util_buf *own = calloc(n_vals, sizeof(util_buf));
    if (vals == NULL || own == NULL) {
        rv = EVBUS_ENOMEM;
        goto out;
    }

    if (spec->kind == TRANSFORM_INPUT_PATH) {
        if ((rv = eval_path(&spec->path, event, event_len, root, &own[0], &vals[0])) != 0)
            goto out;
        if (!vals[0].found) {
            seterr(err, err_len, "InputPath %s selects nothing in the event", spec->path.text);
            rv = EVBUS_ENOTFOUND;
            goto out;
        }
        rv = emit_json_form(&b, &vals[0]);
    } else {
        for (size_t k = 0; k < n_vals && rv == 0; k++) {
            if (!spec->used[k])
                continue;
            if (k < PV_COUNT)
                rv = eval_predefined((int)k, event, event_len, root, ctx, &own[k], &vals[k], err,
                                     err_len);
            else
                rv = eval_path(&spec->vars[k - PV_COUNT].path, event, event_len, root, &own[k],
                               &vals[k]);
        }
        for (size_t s = 0; s < spec->n_segs && rv == 0; s++) {
            const tseg *seg = &spec->segs[s];
            if (seg->var < 0)
                rv = buf_add(&b, spec->text + seg->off, seg->len);
            else if (seg->json_form)
                rv = emit_json_form(&b, &vals[seg->var]);
            else
                rv = emit_text_form(&b, &vals[seg->var]);
            if (rv == 0 && b.len > max)
                break;
        }
    }
    if (rv != 0)
        goto out;
    if (b.len > max) {
        seterr(err, err_len, "the transformed payload exceeds %zu bytes", max);
        rv = EVBUS_ETOOBIG;
        goto out;
    }
    if ((rv = buf_add(&b, "", 1)) != 0)
        goto out;
    *out = (char *)b.data;
    *out_len = b.len - 1;
    b.data = NULL;
out:
    if (rv == EVBUS_ENOMEM)
        seterr(err, err_len, "out of memory");
    for (size_t k = 0; own != NULL && k < n_vals; k++)
        util_buf_free(&own[k]);
    free(own);
    free(vals);
    util_buf_free(&b);
    return rv;
}
