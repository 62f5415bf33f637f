/*
 * alloc.h - the library's allocation entry points.  Everything goes
 * through the hooks set with tether_set_allocator(), so tests can fail the
 * Nth allocation and count allocations per call.
 */
#ifndef TT_CORE_ALLOC_H
#define TT_CORE_ALLOC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

void *tt_malloc(size_t size);
void *tt_calloc(size_t n, size_t size);
void *tt_realloc(void *ptr, size_t size);
void tt_free(void *ptr);
char *tt_strdup(const char *s);
char *tt_strndup(const char *s, size_t n);

/* protobuf-c allocator that forwards to the hooks above. */
extern ProtobufCAllocator tt_pb_allocator;

#endif
