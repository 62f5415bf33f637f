/*
 * log.h - internal logging through the handler set with
 * tether_log_set_handler().  Lines below the handler's level cost one
 * relaxed atomic load.
 */
#ifndef TT_CORE_LOG_H
#define TT_CORE_LOG_H

#include <stdatomic.h>

#include "tether/tether.h"

int tt_log_enabled(tether_log_level level);
void tt_log(tether_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A log line a peer can provoke at will goes through a gate: at most one
 * line a second passes, and the next one that passes says how many were
 * left out.  tt_log_gate_pass - 1 if this line may be logged (*dropped:
 * lines left out since the last one), 0 if not (it is counted).  A gate is
 * a zero-initialised static; thread-safe. */
typedef struct tt_log_gate {
    _Atomic long last;
    _Atomic unsigned long dropped;
} tt_log_gate;
int tt_log_gate_pass(tt_log_gate *g, unsigned long *dropped);

#define TT_DEBUG(...) tt_log(TETHER_LOG_DEBUG, __VA_ARGS__)
#define TT_INFO(...) tt_log(TETHER_LOG_INFO, __VA_ARGS__)
#define TT_WARN(...) tt_log(TETHER_LOG_WARN, __VA_ARGS__)
#define TT_ERROR(...) tt_log(TETHER_LOG_ERROR, __VA_ARGS__)

#endif
