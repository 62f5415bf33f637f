/*
 * static.h - the "static:host:port,host:port" registry backend: a fixed,
 * read-only address list for clients that have no registry to ask.
 */
#ifndef TT_REGISTRY_STATIC_H
#define TT_REGISTRY_STATIC_H

#include "registry/registry.h"

extern const struct tt_registry_ops tt_static_registry_ops;

#endif
