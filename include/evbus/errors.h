/*
 * evbus error codes: the one table shared by the server, the wire protocol and
 * the SDK. Every function of the SDK returns 0 (EVBUS_OK) or one of these
 * negative codes; error responses on the wire carry the same numbers. Codes are
 * stable: never renumber or reuse one.
 */
#ifndef EVBUS_ERRORS_H
#define EVBUS_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message, retriable) */
#define EVBUS_ERRNO_MAP(X)                                                                         \
    X(OK, 0, "success", 0)                                                                         \
    X(EINVAL, -1, "invalid argument", 0)                                                           \
    X(ENOTFOUND, -2, "not found", 0)                                                               \
    X(EEXIST, -3, "already exists", 0)                                                             \
    X(ENOTLEADER, -4, "this node is not the leader", 1)                                            \
    X(ENOLEADER, -5, "no leader is available", 1)                                                  \
    X(ETIMEDOUT, -6, "timed out", 1)                                                               \
    X(ETOOBIG, -7, "too large", 0)                                                                 \
    X(EPROTO, -8, "protocol error", 0)                                                             \
    X(EIO, -9, "I/O error", 1)                                                                     \
    X(ENOMEM, -10, "out of memory", 1)                                                             \
    X(ECONN, -11, "connection failed", 1)                                                          \
    X(EUNAVAIL, -12, "service unavailable", 1)                                                     \
    X(EBUSY, -13, "server busy, retry later", 1)                                                   \
    X(EVERSION, -14, "unsupported protocol version", 0)                                            \
    X(EAUTH, -15, "authentication failed", 0)                                                      \
    X(ECLOSED, -16, "closed", 1)                                                                   \
    X(ECANCELED, -17, "cancelled", 0)                                                              \
    X(EINTERNAL, -18, "internal error", 0)                                                         \
    X(ERANGE, -19, "offset out of range", 0)                                                       \
    X(EUNKNOWN_MSG, -20, "unknown message type", 0)                                                \
    X(ESEQUENCE, -21, "producer sequence older than the dedup window", 0)                          \
    X(EBACKFILL, -22, "this node is still backfilling that range; read another node", 1)

typedef enum evbus_errno {
#define EVBUS__ERRNO_ENUM(name, value, msg, retriable) EVBUS_##name = value,
    EVBUS_ERRNO_MAP(EVBUS__ERRNO_ENUM)
#undef EVBUS__ERRNO_ENUM
} evbus_errno;

/* Static message for a code; "unknown error" for a code not in the table. Never NULL. */
const char *evbus_strerror(int code);

/* Stable name of a code ("EVBUS_ENOTFOUND"); "EVBUS_UNKNOWN" for a code not in the table. */
const char *evbus_errname(int code);

/* 1 if a request that failed with this code may succeed when retried unchanged. */
int evbus_is_retriable(int code);

#ifdef __cplusplus
}
#endif

#endif /* EVBUS_ERRORS_H */
