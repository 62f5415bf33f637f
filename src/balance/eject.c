/*
 * eject.c - outlier ejection bookkeeping (eject.h).
 */
#include "balance/eject.h"

int
tt_eject_allowed(const tt_eject_cfg *cfg, size_t n, size_t nout)
{
    if (nout == 0) {
        /* One may always go: with a cap that rounds to none, a single bad
         * instance among few would never be taken out (Envoy does the
         * same). */
        return n > 0;
    }
    return (uint64_t)(nout + 1) * 100 <= (uint64_t)cfg->max_percent * n;
}

int
tt_eject_failure(tt_eject *e, const tt_eject_cfg *cfg)
{
    if (e->state != TT_EJECT_NONE || cfg->failures == 0) {
        return 0;
    }
    e->fails++;
    return e->fails >= cfg->failures;
}

void
tt_eject_success(tt_eject *e)
{
    e->fails = 0;
}

static uint32_t
length_ms(const tt_eject_cfg *cfg, uint32_t count)
{
    uint64_t ms = cfg->base_ms;
    for (uint32_t i = 1; i < count && ms < cfg->max_ms; i++) {
        ms *= 2;
    }
    return ms > cfg->max_ms ? cfg->max_ms : (uint32_t)ms;
}

uint32_t
tt_eject_start(tt_eject *e, const tt_eject_cfg *cfg, uint64_t now_ms)
{
    /* An instance that stayed in for max_ms starts over from base_ms: an
     * old ejection says nothing about it any more. */
    if (e->admitted_ms != 0 && now_ms - e->admitted_ms >= cfg->max_ms) {
        e->count = 0;
    }
    e->count++;
    uint32_t ms = length_ms(cfg, e->count);
    e->state = TT_EJECT_OUT;
    e->fails = 0;
    e->until_ms = now_ms + ms;
    return ms;
}

int
tt_eject_due(tt_eject *e, uint64_t now_ms)
{
    if (e->state != TT_EJECT_OUT || now_ms < e->until_ms) {
        return 0;
    }
    e->state = TT_EJECT_PROBING;
    return 1;
}

uint32_t
tt_eject_probed(tt_eject *e, const tt_eject_cfg *cfg, int ok, uint64_t now_ms)
{
    if (ok) {
        e->state = TT_EJECT_NONE;
        e->fails = 0;
        e->admitted_ms = now_ms;
        return 0;
    }
    e->count++;
    uint32_t ms = length_ms(cfg, e->count);
    e->state = TT_EJECT_OUT;
    e->until_ms = now_ms + ms;
    return ms;
}
