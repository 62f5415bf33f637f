/*
 * err.h - what the library needs to know about its own error codes.
 */
#ifndef TT_CORE_ERR_H
#define TT_CORE_ERR_H

#include <stdbool.h>

#include "tether/tether.h"

/* tt_err_on_wire - whether code can travel as the status of an error
 * answer: an error of the list in tether.h (not TETHER_OK, not a wrapped
 * system error, not an unknown number). */
bool tt_err_on_wire(tether_err code);

#endif
