/*
 * instance.c - deep copies, comparison and lists of tether_instance.
 *
 * Instances handed to callers (lists, watch events) own every string they
 * point to, so that a backend can reuse or free its own buffers at once.
 */
#include <string.h>

#include "core/alloc.h"
#include "registry/registry.h"

/* Duplicate s (NULL stays NULL); false only on allocation failure. */
static bool
dup_opt(const char **dst, const char *s)
{
    if (s == NULL) {
        *dst = NULL;
        return true;
    }
    *dst = tt_strdup(s);
    return *dst != NULL;
}

tether_err
tt_instance_copy(tether_instance *dst, const tether_instance *src)
{
    memset(dst, 0, sizeof *dst);
    dst->weight = src->weight;
    dst->state = src->state;
    dst->pid = src->pid;
    if (!dup_opt(&dst->service, src->service) || !dup_opt(&dst->address, src->address) ||
        !dup_opt(&dst->id, src->id)) {
        goto fail;
    }
    if (src->meta_count > 0) {
        tether_meta *m = tt_calloc(src->meta_count, sizeof *m);
        if (m == NULL) {
            goto fail;
        }
        dst->meta = m;
        /* meta_count tracks how many pairs are filled, so a failure half
         * way is freed correctly by tt_instance_clear. */
        for (size_t i = 0; i < src->meta_count; i++) {
            if (!dup_opt(&m[i].key, src->meta[i].key) ||
                !dup_opt(&m[i].value, src->meta[i].value)) {
                dst->meta_count = i + 1;
                goto fail;
            }
        }
        dst->meta_count = src->meta_count;
    }
    return TETHER_OK;

fail:
    tt_instance_clear(dst);
    return TETHER_ENOMEM;
}

void
tt_instance_clear(tether_instance *inst)
{
    if (inst == NULL) {
        return;
    }
    tt_free((void *)inst->service);
    tt_free((void *)inst->address);
    tt_free((void *)inst->id);
    if (inst->meta != NULL) {
        for (size_t i = 0; i < inst->meta_count; i++) {
            tt_free((void *)inst->meta[i].key);
            tt_free((void *)inst->meta[i].value);
        }
        tt_free((void *)inst->meta);
    }
    memset(inst, 0, sizeof *inst);
}

static bool
str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

bool
tt_instance_equal(const tether_instance *a, const tether_instance *b)
{
    if (a->weight != b->weight || a->state != b->state || a->pid != b->pid ||
        a->meta_count != b->meta_count) {
        return false;
    }
    if (!str_eq(a->service, b->service) || !str_eq(a->address, b->address) ||
        !str_eq(a->id, b->id)) {
        return false;
    }
    for (size_t i = 0; i < a->meta_count; i++) {
        if (!str_eq(a->meta[i].key, b->meta[i].key) ||
            !str_eq(a->meta[i].value, b->meta[i].value)) {
            return false;
        }
    }
    return true;
}

/* Make room for one more item; the capacity is not stored, so grow at
 * powers of two of count. */
static tether_err
list_grow(tether_instance_list *list)
{
    size_t n = list->count;
    if (n != 0 && (n & (n - 1)) != 0) {
        return TETHER_OK; /* not a power of two: room is left */
    }
    size_t cap = n == 0 ? 4 : n * 2;
    if (n != 0 && n < 4) {
        return TETHER_OK; /* the first block holds 4 */
    }
    tether_instance *items = tt_realloc(list->items, cap * sizeof *items);
    if (items == NULL) {
        return TETHER_ENOMEM;
    }
    list->items = items;
    return TETHER_OK;
}

tether_err
tt_instance_list_push_take(tether_instance_list *list, tether_instance *inst)
{
    if (list_grow(list) != TETHER_OK) {
        return TETHER_ENOMEM;
    }
    list->items[list->count++] = *inst;
    memset(inst, 0, sizeof *inst);
    return TETHER_OK;
}

tether_err
tt_instance_list_push(tether_instance_list *list, const tether_instance *inst)
{
    tether_instance copy;
    if (tt_instance_copy(&copy, inst) != TETHER_OK) {
        return TETHER_ENOMEM;
    }
    if (tt_instance_list_push_take(list, &copy) != TETHER_OK) {
        tt_instance_clear(&copy);
        return TETHER_ENOMEM;
    }
    return TETHER_OK;
}

void
tt_instance_list_clear(tether_instance_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        tt_instance_clear(&list->items[i]);
    }
    tt_free(list->items);
    list->items = NULL;
    list->count = 0;
}

const char *
tether_instance_state_name(tether_instance_state state)
{
    switch (state) {
    case TETHER_INSTANCE_SERVING:
        return "serving";
    case TETHER_INSTANCE_DRAINING:
        return "draining";
    }
    return "unknown";
}

const char *
tether_watch_event_name(tether_watch_event ev)
{
    switch (ev) {
    case TETHER_WATCH_ADDED:
        return "added";
    case TETHER_WATCH_REMOVED:
        return "removed";
    case TETHER_WATCH_CHANGED:
        return "changed";
    }
    return "unknown";
}
