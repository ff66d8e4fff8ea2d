/*
 * testsdk: see testsdk.h.
 *
 * tl_wait_leader() polls rather than subscribing: the protocol has no leader
 * change notification, and an election takes about one election timeout
 * (1 s by default), so 50 ms polls cost nothing measurable.
 */
#include "lib/testsdk.h"

#include <stdio.h>

#include "evbus/evbus.h"
#include "lib/testlib.h"

#define TL_LEADER_POLL_MS 50u
#define TL_LEADER_CALL_MS 1000u /* bound of one connect or status call */

int tl_wait_leader(const char *addr, uint32_t timeout_ms, uint32_t *leader_id)
{
    if (addr == NULL || addr[0] == '\0')
        return EVBUS_EINVAL;
    uint64_t deadline = tl_now_ms() + timeout_ms;
    /* Each round costs at least one poll interval, so this caps the rounds at the time allowed. */
    uint64_t rounds = timeout_ms / TL_LEADER_POLL_MS + 2u;
    int last_rv = EVBUS_ETIMEDOUT;
    char last_msg[256] = "";
    evbus_client *c = NULL;
    for (uint64_t i = 0; i < rounds; i++) {
        if (c == NULL) {
            evbus_client_options opts;
            evbus_client_options_init(&opts);
            opts.servers = addr;
            opts.client_name = "testlib";
            opts.timeout_ms = TL_LEADER_CALL_MS;
            last_rv = evbus_client_create(&opts, &c);
            if (last_rv != 0) {
                snprintf(last_msg, sizeof(last_msg), "connect: %s", evbus_strerror(last_rv));
                c = NULL;
            }
        }
        if (c != NULL) {
            evbus_cluster_status *st = NULL;
            last_rv = evbus_cluster_status_get(c, &st);
            if (last_rv == 0) {
                uint32_t id = st->leader_id;
                evbus_cluster_status_free(st);
                if (id != 0) {
                    if (leader_id != NULL)
                        *leader_id = id;
                    evbus_client_destroy(c);
                    return 0;
                }
                snprintf(last_msg, sizeof(last_msg), "no leader yet");
            } else {
                snprintf(last_msg, sizeof(last_msg), "cluster status: %s: %s",
                         evbus_strerror(last_rv), evbus_client_errmsg(c));
                /* The connection may be the problem: start over with a fresh client. */
                evbus_client_destroy(c);
                c = NULL;
            }
        }
        if (tl_now_ms() >= deadline)
            break;
        tl_sleep_ms(TL_LEADER_POLL_MS);
    }
    if (c != NULL)
        evbus_client_destroy(c);
    fprintf(stderr, "testlib: no leader at %s after %u ms (last: %s)\n", addr, timeout_ms,
            last_msg);
    return EVBUS_ETIMEDOUT;
}
