/*
 * Admin API endpoints: retained messages, listeners, topics (admin_internal.h).
 * Filled in by issue 18's work.
 */
#include "broker/admin_internal.h"

const struct admin_route admin_retained_routes[] = {
    {NULL, NULL, NULL, 0},
};
