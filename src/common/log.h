/*
 * common/log: key=value log lines on stderr:
 *   ts=2026-12-03T17:35:48.123Z level=info module=net node=1 msg="listening" addr=127.0.0.1:7070
 * The level is process-wide and set once at start-up, before any thread runs.
 */
#ifndef EVBUS_COMMON_LOG_H
#define EVBUS_COMMON_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

void log_set_level(enum log_level level);
void log_set_node(unsigned node_id);
/* Parses "debug", "info", "warn", "error". Returns 0 or EVBUS_EINVAL. */
int log_parse_level(const char *s, enum log_level *out);
int log_enabled(enum log_level level);

/* fmt produces the rest of the line after msg=..., e.g. "addr=%s". */
void log_write(enum log_level level, const char *module, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_DEBUGF(mod, msg, ...)                                                                  \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_write(LOG_DEBUG, mod, msg, __VA_ARGS__);                                           \
    } while (0)
#define LOG_INFOF(mod, msg, ...) log_write(LOG_INFO, mod, msg, __VA_ARGS__)
#define LOG_WARNF(mod, msg, ...) log_write(LOG_WARN, mod, msg, __VA_ARGS__)
#define LOG_ERRORF(mod, msg, ...) log_write(LOG_ERROR, mod, msg, __VA_ARGS__)

#endif
