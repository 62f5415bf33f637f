/*
 * calculator_service.c - the Calculator handlers.  Arithmetic wraps like
 * Go's int (two's complement), and the one Go panic case (MinInt64 / -1)
 * is an error reply instead.
 */
#include "calculator_service.h"

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

void
calculator_reply_int(tether_call *call, int64_t v)
{
    Google__Protobuf__Int64Value out = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    out.value = v;
    tether_call_reply(call, &out.base);
}

void
calculator_add(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Args *a = (const Args *)req;
    (void)arg;
    calculator_reply_int(call, (int64_t)((uint64_t)a->a + (uint64_t)a->b));
}

void
calculator_sub(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Args *a = (const Args *)req;
    (void)arg;
    calculator_reply_int(call, (int64_t)((uint64_t)a->a - (uint64_t)a->b));
}

void
calculator_mul(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Args *a = (const Args *)req;
    (void)arg;
    calculator_reply_int(call, (int64_t)((uint64_t)a->a * (uint64_t)a->b));
}

void
calculator_div(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Args *a = (const Args *)req;
    (void)arg;
    if (a->b == 0) {
        tether_call_fail(call, "divide by zero"); /* Go's errors.New("divide by zero") */
        return;
    }
    if (a->a == INT64_MIN && a->b == -1) {
        tether_call_fail(call, "integer overflow");
        return;
    }
    calculator_reply_int(call, a->a / a->b);
}
