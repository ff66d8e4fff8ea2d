/* common/util: see util.h. */
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "evbus/errors.h"

uint64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t util_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void util_rfc3339(uint64_t ms, char *out, size_t out_len)
{
    time_t secs = (time_t)(ms / 1000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, out_len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

int util_parse_rfc3339(const char *s, uint64_t *ms_out)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, frac_ms = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return EVBUS_EINVAL;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
        digits(&p, 2, &sec))
        return EVBUS_EINVAL;
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0)
            return EVBUS_EINVAL;
        for (; n < 3; n++)
            frac_ms *= 10;
    }
    long offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return EVBUS_EINVAL;
        offset_s = sign * (oh * 3600L + om * 60L);
    } else {
        return EVBUS_EINVAL;
    }
    if (*p != '\0')
        return EVBUS_EINVAL;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
        sec > 60)
        return EVBUS_EINVAL;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return EVBUS_EINVAL;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return EVBUS_EINVAL;
    long long total = (long long)t - offset_s;
    if (total < 0)
        return EVBUS_EINVAL;
    *ms_out = (uint64_t)total * 1000u + (uint64_t)frac_ms;
    return 0;
}

int util_parse_hostport(const char *s, char *host, size_t host_len, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= host_len)
        return EVBUS_EINVAL;
    uint64_t p;
    if (util_parse_u64(colon + 1, 1, 65535, &p) != 0)
        return EVBUS_EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (uint16_t)p;
    return 0;
}

int util_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return EVBUS_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return EVBUS_EINVAL;
    *out = v;
    return 0;
}

int util_buf_reserve(util_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *nd = realloc(b->data, cap);
    if (nd == NULL)
        return EVBUS_ENOMEM;
    b->data = nd;
    b->cap = cap;
    return 0;
}

int util_buf_append(util_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0; /* memcpy with a NULL buffer is undefined even for 0 bytes */
    int rv = util_buf_reserve(b, n);
    if (rv != 0)
        return rv;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void util_buf_free(util_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int util_mkdir_p(const char *path)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}
