/* api/peers: see peers.h. */
#include "api/peers.h"

evbus_client *peers_connect(const char *client_addr, uint32_t timeout_ms, int *err)
{
    evbus_client_options o;
    evbus_client_options_init(&o);
    o.servers = client_addr;
    o.client_name = "evbusd-peer";
    o.timeout_ms = timeout_ms;
    o.idempotent = 0;
    evbus_client *c = NULL;
    *err = evbus_client_create(&o, &c);
    return *err == 0 ? c : NULL;
}
