/*
 * log.h - internal logging through the handler set with
 * tether_log_set_handler().  Lines below the handler's level cost one
 * relaxed atomic load.
 */
#ifndef TT_CORE_LOG_H
#define TT_CORE_LOG_H

#include "tether/tether.h"

int tt_log_enabled(tether_log_level level);
void tt_log(tether_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define TT_DEBUG(...) tt_log(TETHER_LOG_DEBUG, __VA_ARGS__)
#define TT_INFO(...) tt_log(TETHER_LOG_INFO, __VA_ARGS__)
#define TT_WARN(...) tt_log(TETHER_LOG_WARN, __VA_ARGS__)
#define TT_ERROR(...) tt_log(TETHER_LOG_ERROR, __VA_ARGS__)

#endif
