/*
 * Admin API endpoints: users (admin_internal.h). Filled in by issue 18's work.
 */
#include "broker/admin_internal.h"

const struct admin_route admin_users_routes[] = {
    {NULL, NULL, NULL, 0},
};
