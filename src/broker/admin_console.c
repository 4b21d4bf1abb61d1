/*
 * Admin API endpoints: console (admin_internal.h). Filled in by issue 18's work.
 */
#include "broker/admin_internal.h"

const struct admin_route admin_console_routes[] = {
    {NULL, NULL, NULL, 0},
};
