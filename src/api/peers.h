/*
 * api/peers: blocking requests to other nodes through the SDK, for worker
 * threads only (each call makes its own client and private loop).
 */
#ifndef EVBUS_API_PEERS_H
#define EVBUS_API_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "evbus/evbus.h"

/* A client connected to exactly one node (no list), or NULL with *err set. */
evbus_client *peers_connect(const char *client_addr, uint32_t timeout_ms, int *err);

#endif
