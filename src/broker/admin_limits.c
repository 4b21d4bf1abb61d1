/*
 * Admin API endpoints: limits (admin_internal.h). Filled in by issue 18's work.
 */
#include "broker/admin_internal.h"

const struct admin_route admin_limits_routes[] = {
    {NULL, NULL, NULL, 0},
};
