/* The error-code table of include/evbus/errors.h turned into lookups. Linked into the server and
 * the SDK alike so both print the same words for the same number. */
#include "evbus/errors.h"

const char *evbus_strerror(int code)
{
    switch (code) {
#define X(name, value, msg, retriable)                                                             \
    case value: return msg;
        EVBUS_ERRNO_MAP(X)
#undef X
    }
    return "unknown error";
}

const char *evbus_errname(int code)
{
    switch (code) {
#define X(name, value, msg, retriable)                                                             \
    case value: return "EVBUS_" #name;
        EVBUS_ERRNO_MAP(X)
#undef X
    }
    return "EVBUS_UNKNOWN";
}

int evbus_is_retriable(int code)
{
    switch (code) {
#define X(name, value, msg, retriable)                                                             \
    case value: return retriable;
        EVBUS_ERRNO_MAP(X)
#undef X
    }
    return 0;
}
