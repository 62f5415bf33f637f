/*
 * calculator_service.h - the Calculator service's handlers (Go's
 * Calculator: Add, Sub, Mul, Div with "divide by zero"), shared by
 * calculator-server and the tests that serve the same service.
 */
#ifndef CALCULATOR_SERVICE_H
#define CALCULATOR_SERVICE_H

#include <tether/service.h>

/* Handlers for Args -> google.protobuf.Int64Value; each answers inline. */
void calculator_add(tether_call *call, const ProtobufCMessage *req, void *arg);
void calculator_sub(tether_call *call, const ProtobufCMessage *req, void *arg);
void calculator_mul(tether_call *call, const ProtobufCMessage *req, void *arg);
void calculator_div(tether_call *call, const ProtobufCMessage *req, void *arg);

/* calculator_reply_int - answer call with an Int64Value holding v. */
void calculator_reply_int(tether_call *call, int64_t v);

#endif
