/*
 * Admin API endpoints: clients (admin_internal.h). Filled in by issue 18's work.
 */
#include "broker/admin_internal.h"

const struct admin_route admin_clients_routes[] = {
    {NULL, NULL, NULL, 0},
};
