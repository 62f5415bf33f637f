/*
 * stats.c - tether_registry_get_stats(): the counters every registry
 * keeps in its base object (registry.h), read without a lock.
 */
#include "core/clock.h"
#include "registry/registry.h"
#include "tether/metrics.h"

tether_err
tether_registry_get_stats(const tether_registry *r, tether_registry_stats *out)
{
    if (r == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    struct tt_registry_counters *k = (struct tt_registry_counters *)&r->stats;
    out->lease_id = atomic_load_explicit(&k->lease, memory_order_relaxed);
    uint64_t ok = atomic_load_explicit(&k->ka_ok_ns, memory_order_relaxed);
    uint64_t now = tt_now_ns();
    out->keepalive_age_ms = ok == 0 ? -1 : (int64_t)((now > ok ? now - ok : 0) / 1000000u);
    out->registrations = atomic_load_explicit(&k->regs, memory_order_relaxed);
    out->reregistrations = atomic_load_explicit(&k->reregs, memory_order_relaxed);
    out->watch_resumes = atomic_load_explicit(&k->resumes, memory_order_relaxed);
    return TETHER_OK;
}
