/*
 * interop-client - tether's client calling a Go net/rpc server (or any
 * server) over gob or jsonrpc, for the interop tests.
 *
 *   interop-client ADDR gob|jsonrpc|native
 *
 * Calls Calculator.Add, Calculator.Div by zero (TETHER_EREMOTE "divide by
 * zero"), an unknown method, Codec.Echo with the rich message, 200
 * asynchronous calls in flight, and 8 threads of synchronous calls.
 * Prints "ok: ..." per check; exits 1 on the first failure.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tether/client.h>

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "interop.pb-c.h"

static tether_client *cli;

static void
fail(const char *what, tether_err rc, const char *text)
{
    fprintf(stderr, "FAIL: %s: %s%s%s\n", what, tether_strerror(rc), text ? ": " : "",
            text ? text : "");
    exit(1);
}

static int64_t
calc(const char *method, int64_t a, int64_t b, tether_err *rc_out, char **text)
{
    Args args = ARGS__INIT;
    args.a = a;
    args.b = b;
    ProtobufCMessage *reply = NULL;
    tether_err rc =
        tether_client_call(cli, method, &args.base, &google__protobuf__int64_value__descriptor,
                           &reply, TETHER_CALL_TIMEOUT(5000), text);
    *rc_out = rc;
    if (rc != TETHER_OK) {
        return 0;
    }
    int64_t v = ((Google__Protobuf__Int64Value *)reply)->value;
    tether_msg_free(reply);
    return v;
}

static _Atomic int async_left;
static _Atomic int async_bad;

static void
on_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    intptr_t want = (intptr_t)arg;
    if (r->err != TETHER_OK || r->msg == NULL ||
        ((Google__Protobuf__Int64Value *)r->msg)->value != want) {
        atomic_fetch_add(&async_bad, 1);
    }
    if (r->msg != NULL) {
        tether_msg_free(r->msg);
    }
    atomic_fetch_sub(&async_left, 1);
}

static void *
sync_worker(void *arg)
{
    intptr_t k = (intptr_t)arg;
    for (int i = 0; i < 300; i++) {
        tether_err rc;
        char *text = NULL;
        int64_t v = calc("Calculator.Add", k, i, &rc, &text);
        if (rc != TETHER_OK || v != k + i) {
            fail("threaded sync calls", rc, text);
        }
    }
    return NULL;
}

int
main(int argc, char **argv)
{
    if (argc != 3 && argc != 4 && argc != 6) {
        fprintf(stderr, "usage: interop-client ADDR gob|jsonrpc|native [CA.pem [CERT KEY]]\n");
        return 2;
    }
    tether_log_set_handler(tether_log_stderr, TETHER_LOG_WARN, NULL);
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.codec = strcmp(argv[2], "gob") == 0       ? TETHER_CODEC_GOB
                : strcmp(argv[2], "jsonrpc") == 0 ? TETHER_CODEC_JSONRPC
                                                  : TETHER_CODEC_NATIVE;
    if (argc >= 4) { /* TLS, verifying the server against CA.pem */
        cfg.tls.enable = 1;
        cfg.tls.ca_file = argv[3];
    }
    if (argc == 6) { /* and a client certificate */
        cfg.tls.cert_file = argv[4];
        cfg.tls.key_file = argv[5];
    }
    tether_err rc = tether_client_create(argv[1], &cfg, &cli);
    if (rc != TETHER_OK) {
        fail("connect", rc, NULL);
    }
    char *text = NULL;
    int64_t v = calc("Calculator.Add", 1, 2, &rc, &text);
    if (rc != TETHER_OK || v != 3) {
        fail("Add", rc, text);
    }
    printf("ok: Add\n");
    calc("Calculator.Div", 1, 0, &rc, &text);
    if (rc != TETHER_EREMOTE || text == NULL || strcmp(text, "divide by zero") != 0) {
        fail("Div by zero", rc, text);
    }
    tether_free(text);
    text = NULL;
    printf("ok: Div by zero -> \"divide by zero\"\n");
    calc("Calculator.Nope", 1, 0, &rc, &text);
    if (rc != TETHER_ENOMETHOD || text == NULL ||
        strcmp(text, "rpc: can't find method Calculator.Nope") != 0) {
        fail("unknown method", rc, text);
    }
    tether_free(text);
    text = NULL;
    printf("ok: unknown method\n");

    /* The rich message both ways. */
    Codectest__Rich in = CODECTEST__RICH__INIT;
    Codectest__Inner child = CODECTEST__INNER__INIT;
    int64_t values[] = {1, -1, 0, 300, INT64_MAX, INT64_MIN};
    char *tags[] = {"x", "", "yz"};
    Codectest__Rich__ScoresEntry s1 = CODECTEST__RICH__SCORES_ENTRY__INIT;
    Codectest__Rich__ScoresEntry *scores[] = {&s1};
    Google__Protobuf__Int64Value opt = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    s1.key = "a";
    s1.value = 1;
    child.name = "kid";
    child.count = 7;
    opt.value = 42;
    in.name = "h\xc3\xa9llo <w> & \"q\"";
    in.n_values = 6;
    in.values = values;
    in.n_tags = 3;
    in.tags = tags;
    in.n_scores = 1;
    in.scores = scores;
    in.child = &child;
    in.big = UINT64_MAX;
    in.small = -5;
    in.ratio = 0.1;
    in.ok = 1;
    in.opt = &opt;
    ProtobufCMessage *out = NULL;
    rc = tether_client_call(cli, "Codec.Echo", &in.base, &codectest__rich__descriptor, &out,
                            TETHER_CALL_TIMEOUT(5000), &text);
    if (rc != TETHER_OK) {
        fail("Codec.Echo", rc, text);
    }
    Codectest__Rich *r = (Codectest__Rich *)out;
    if (strcmp(r->name, in.name) != 0 || r->n_values != 6 || r->values[5] != INT64_MIN ||
        r->n_tags != 3 || strcmp(r->tags[2], "yz") != 0 || r->n_scores != 1 ||
        strcmp(r->scores[0]->key, "a") != 0 || r->scores[0]->value != 1 || r->child == NULL ||
        r->child->count != 7 || r->big != UINT64_MAX || r->small != -5 || r->ratio != 0.1 ||
        !r->ok || r->opt == NULL || r->opt->value != 42) {
        fprintf(stderr, "FAIL: Codec.Echo: reply differs\n");
        return 1;
    }
    tether_msg_free(out);
    printf("ok: rich message\n");

    /* Many asynchronous calls in flight at once. */
    Args args[200];
    atomic_store(&async_left, 200);
    for (int i = 0; i < 200; i++) {
        args[i] = (Args)ARGS__INIT;
        args[i].a = i;
        args[i].b = 1000;
        rc = tether_client_call_async(
            cli, "Calculator.Add", &args[i].base, &google__protobuf__int64_value__descriptor,
            TETHER_CALL_TIMEOUT(5000), on_reply, (void *)(intptr_t)(i + 1000));
        if (rc != TETHER_OK) {
            fail("async call", rc, NULL);
        }
    }
    for (int i = 0; i < 1000 && atomic_load(&async_left) > 0; i++) {
        usleep(10000);
    }
    if (atomic_load(&async_left) != 0 || atomic_load(&async_bad) != 0) {
        fprintf(stderr, "FAIL: async: %d left, %d bad\n", atomic_load(&async_left),
                atomic_load(&async_bad));
        return 1;
    }
    printf("ok: 200 async calls in flight\n");

    pthread_t th[8];
    for (intptr_t k = 0; k < 8; k++) {
        pthread_create(&th[k], NULL, sync_worker, (void *)k);
    }
    for (int k = 0; k < 8; k++) {
        pthread_join(th[k], NULL);
    }
    printf("ok: 8 threads x 300 sync calls\n");

    /* JSON in, JSON out (what `tether call` uses). */
    char *json = NULL;
    rc = tether_client_call_json(cli, "Calculator.Add", "{\"A\":40,\"B\":2}", &json,
                                 TETHER_CALL_TIMEOUT(5000), &text);
    if (rc != TETHER_OK || strcmp(json, "42") != 0) {
        if (rc == TETHER_ENOTSUP && cfg.codec == TETHER_CODEC_GOB) {
            printf("ok: call_json over gob needs a tether server (%s)\n", text);
            tether_free(text);
        } else {
            fail("call_json", rc, text != NULL ? text : json);
        }
    } else {
        printf("ok: call_json -> %s\n", json);
    }
    tether_free(json);
    tether_client_destroy(cli);
    return 0;
}
