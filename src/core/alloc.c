/*
 * alloc.c - allocator hooks (tether_set_allocator) and helpers.
 */
#include "core/alloc.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tether/service.h"
#include "tether/tether.h"

static tether_allocator hooks = {malloc, realloc, free};

void
tether_set_allocator(const tether_allocator *alloc)
{
    if (alloc == NULL || alloc->malloc_fn == NULL || alloc->realloc_fn == NULL ||
        alloc->free_fn == NULL) {
        hooks.malloc_fn = malloc;
        hooks.realloc_fn = realloc;
        hooks.free_fn = free;
        json_set_alloc_funcs(malloc, free);
        return;
    }
    hooks = *alloc;
    /* jansson (JSON for registries and codecs) allocates through the same
     * hooks, so an allocator that counts or fails sees everything. */
    json_set_alloc_funcs(tt_malloc, tt_free);
}

void *
tt_malloc(size_t size)
{
    return hooks.malloc_fn(size == 0 ? 1 : size);
}

void *
tt_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    void *p = tt_malloc(n * size);
    if (p != NULL) {
        memset(p, 0, n * size);
    }
    return p;
}

void *
tt_realloc(void *ptr, size_t size)
{
    return hooks.realloc_fn(ptr, size == 0 ? 1 : size);
}

void
tt_free(void *ptr)
{
    if (ptr != NULL) {
        hooks.free_fn(ptr);
    }
}

void
tether_free(void *ptr)
{
    tt_free(ptr);
}

char *
tt_strndup(const char *s, size_t n)
{
    char *p = tt_malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *
tt_strdup(const char *s)
{
    return tt_strndup(s, strlen(s));
}

static void *
pb_alloc(void *data, size_t size)
{
    (void)data;
    return tt_malloc(size);
}

static void
pb_free(void *data, void *ptr)
{
    (void)data;
    tt_free(ptr);
}

ProtobufCAllocator tt_pb_allocator = {pb_alloc, pb_free, NULL};

void
tether_msg_free(ProtobufCMessage *msg)
{
    if (msg != NULL) {
        protobuf_c_message_free_unpacked(msg, &tt_pb_allocator);
    }
}
