/*
 * eject.h - outlier ejection: when an instance that is up but not serving
 * is taken out of the pick set, for how long, and how many may be out at
 * once (after Envoy's outlier detection, gRPC's outlier_detection policy
 * and Finagle's failure accrual).  Pure bookkeeping: the caller (the
 * client by service name) supplies the time, holds the lock, does the
 * probing and keeps the ejected instances out of its picks.
 *
 * Life of an instance: healthy -> (eject_failures consecutive transport
 * failures, or one unanswered ping) ejected until a time -> (time is up)
 * probing -> a PONG admits it (healthy), no PONG ejects it again for
 * twice as long.  The count of ejections that doubles the time resets
 * once an instance stayed admitted for max_ms.
 */
#ifndef TT_BALANCE_EJECT_H
#define TT_BALANCE_EJECT_H

#include <stddef.h>
#include <stdint.h>

typedef struct tt_eject_cfg {
    uint32_t failures;    /* consecutive failures that eject; 0: never */
    uint32_t base_ms;     /* the first ejection's length */
    uint32_t max_ms;      /* the longest ejection */
    uint32_t max_percent; /* share of instances ejected at once (at least one) */
} tt_eject_cfg;

enum { TT_EJECT_NONE, TT_EJECT_OUT, TT_EJECT_PROBING };

typedef struct tt_eject {
    int state;            /* TT_EJECT_* */
    uint32_t fails;       /* consecutive failures so far */
    uint32_t count;       /* ejections in a row (the doubling) */
    uint64_t until_ms;    /* TT_EJECT_OUT: when the probe is due */
    uint64_t admitted_ms; /* when it last came back (0: never ejected) */
} tt_eject;

/* tt_eject_allowed - whether one more of n instances may be ejected while
 * nout are out (ejected or probing): never more than max_percent of n, but
 * one always may. */
int tt_eject_allowed(const tt_eject_cfg *cfg, size_t n, size_t nout);

/* tt_eject_failure - note a transport failure or timeout.  Returns 1 when
 * it makes failures in a row (the caller then ejects, if allowed). */
int tt_eject_failure(tt_eject *e, const tt_eject_cfg *cfg);

/* tt_eject_success - note a call that reached the instance and came back. */
void tt_eject_success(tt_eject *e);

/* tt_eject_start - eject e now (it was not out): base_ms doubled per
 * ejection in a row, up to max_ms.  Returns the length in ms. */
uint32_t tt_eject_start(tt_eject *e, const tt_eject_cfg *cfg, uint64_t now_ms);

/* tt_eject_due - whether e's ejection is over and a probe should start
 * (it moves to TT_EJECT_PROBING then). */
int tt_eject_due(tt_eject *e, uint64_t now_ms);

/* tt_eject_probed - a probe's outcome: ok admits e, else it is ejected
 * again (longer).  Returns the new ejection's length (0 when admitted). */
uint32_t tt_eject_probed(tt_eject *e, const tt_eject_cfg *cfg, int ok, uint64_t now_ms);

#endif
