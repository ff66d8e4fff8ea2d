/*
 * testsdk: test helpers that talk to a running evbusd through the client SDK
 * (include/evbus/evbus.h). Kept apart from testlib because they need the SDK
 * library (evbus_static); tests that only start processes do not.
 */
#ifndef EVBUS_TESTS_TESTSDK_H
#define EVBUS_TESTS_TESTSDK_H

#include <stdint.h>

/*
 * Waits at most timeout_ms until the server at `addr` ("host:port[,...]", as
 * evbus_client_options.servers) reports a leader in evbus_cluster_status_get().
 * Connects anew after each failure, since a node may refuse or drop clients
 * while it starts. *leader_id (may be NULL) gets the leader's node id.
 * Errors: EVBUS_ETIMEDOUT (the last SDK error is printed), EVBUS_EINVAL.
 */
int tl_wait_leader(const char *addr, uint32_t timeout_ms, uint32_t *leader_id);

#endif /* EVBUS_TESTS_TESTSDK_H */
