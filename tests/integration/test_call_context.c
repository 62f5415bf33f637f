/*
 * test_call_context.c - the per-call context of native protocol v2
 * against a real server process: the handler sees the caller's deadline,
 * a call past its deadline is canceled on the server and its handler told,
 * a client that gives up (timeout, CANCEL, destroy) cancels the handler,
 * metadata goes both ways within its limit, codes travel as codes, the
 * handler sees its peer, and a version-1 client gets a clear error.
 * Raw-socket cases build frames by hand from docs/protocol.md.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calculator.pb-c.h"
#include "harness.h"

static h_proc srv;

static int
teardown(void **state)
{
    (void)state;
    return h_stop(&srv);
}

/* What Test.HoldStats says: handlers holding now, and how many learnt of a
 * cancel by polling (ECANCELED, ETIMEDOUT) and by their callback. */
struct hold_stats {
    uint32_t now, canceled, timedout, told;
};

static struct hold_stats
hold_stats(tether_client *c)
{
    uint8_t *out = NULL;
    size_t len = 0;
    H_OK(tether_client_call_raw(c, "Test.HoldStats", "", 0, &out, &len,
                                TETHER_CALL_TIMEOUT(H_CALL_MS), NULL));
    assert_int_equal(len, sizeof(struct hold_stats));
    struct hold_stats s;
    memcpy(&s, out, sizeof s);
    tether_free(out);
    return s;
}

/* A raw REQUEST with a context section holding a deadline of ms (none
 * when ms is 0), for the cases that must not depend on the library's own
 * client.  Returns its size. */
static size_t
put_request_ctx(uint8_t *out, uint64_t seq, const char *name, uint32_t ms)
{
    uint8_t ctx[7] = {
        1, 4, 0, (uint8_t)ms, (uint8_t)(ms >> 8), (uint8_t)(ms >> 16), (uint8_t)(ms >> 24)};
    uint8_t body[4 + sizeof ctx];
    size_t clen = ms > 0 ? sizeof ctx : 0;
    body[0] = (uint8_t)clen;
    body[1] = body[2] = body[3] = 0;
    memcpy(body + 4, ctx, clen);
    size_t n = h_put_frame(out, 1, seq, name, body, 4 + clen);
    out[5] = 1; /* TT_FRAME_F_CTX */
    return n;
}

/* Start the test server, a client to watch it, and a raw connection that
 * has sent Test.Hold as call seq with a deadline of ms (0: none). */
static int
hold_raw(tether_client **probe, uint64_t seq, uint32_t ms)
{
    h_spawn_server(&srv, NULL);
    *probe = h_client(srv.addr[0]);
    int fd = h_raw_connect(srv.addr[0]);
    uint8_t buf[512];
    assert_int_equal(h_raw_send(fd, H_PREFACE, H_PREFACE_LEN), 0);
    size_t n = put_request_ctx(buf, seq, "Test.Hold", ms);
    assert_int_equal(h_raw_send(fd, buf, n), 0);
    return fd;
}

static void
test_handler_sees_deadline(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *c = h_client(srv.addr[0]);
    uint8_t *out = NULL;
    size_t len = 0;
    H_OK(tether_client_call_raw(c, "Test.Deadline", "", 0, &out, &len, TETHER_CALL_TIMEOUT(5000),
                                NULL));
    assert_int_equal(len, 4);
    uint32_t left;
    memcpy(&left, out, 4);
    tether_free(out);
    /* Sent with 5000 ms to go: the handler sees at most that, and more
     * than nothing (it ran well within the call's time). */
    assert_true(left > 0 && left <= 5000);
    tether_client_destroy(c);
}

/* A call whose handler is still running when its deadline passes: the
 * server answers TETHER_ETIMEDOUT itself and tells the handler, which
 * learns it both ways (callback and polling).  The raw client never sends
 * CANCEL, so only the server's own deadline can do this. */
static void
test_deadline_cancels_on_server(void **state)
{
    (void)state;
    tether_client *c;
    int fd = hold_raw(&c, 1, 300);
    uint8_t buf[512];
    size_t n = h_raw_frame(fd, buf, sizeof buf, H_TIMEOUT_MS);
    assert_true(n >= H_FRAME_HDR);
    assert_int_equal(buf[4], 3);          /* ERROR */
    assert_int_equal(h_le32(buf + 8), 1); /* seq 1 */
    assert_int_equal(h_le32(buf + 16), TETHER_ETIMEDOUT);
    assert_true(n - H_FRAME_HDR == strlen("rpc: deadline exceeded"));
    assert_memory_equal(buf + H_FRAME_HDR, "rpc: deadline exceeded", n - H_FRAME_HDR);
    H_WAIT(hold_stats(c).timedout == 1, "the handler to see its deadline pass");
    struct hold_stats s = hold_stats(c);
    assert_int_equal(s.now, 0);
    assert_int_equal(s.told, 1);
    assert_int_equal(s.canceled, 0);
    close(fd);
    tether_client_destroy(c);
}

/* CANCEL for a call in flight: the handler is told TETHER_ECANCELED, and
 * its answer is dropped (the next frame on the connection is the PONG of a
 * PING sent after the handler finished). */
static void
test_cancel_frame(void **state)
{
    (void)state;
    tether_client *c;
    int fd = hold_raw(&c, 7, 0);
    uint8_t buf[512];
    H_WAIT(hold_stats(c).now == 1, "the handler to start");
    size_t n;
    n = h_put_frame(buf, 7, 7, NULL, NULL, 0); /* CANCEL seq 7 */
    assert_int_equal(h_raw_send(fd, buf, n), 0);
    H_WAIT(hold_stats(c).canceled == 1, "the handler to learn of the cancel");
    H_WAIT(hold_stats(c).now == 0, "the handler to finish");
    assert_int_equal(hold_stats(c).told, 1);
    n = h_put_frame(buf, 5, 99, NULL, NULL, 0); /* PING seq 99 */
    assert_int_equal(h_raw_send(fd, buf, n), 0);
    n = h_raw_frame(fd, buf, sizeof buf, H_TIMEOUT_MS);
    assert_true(n >= H_FRAME_HDR);
    assert_int_equal(buf[4], 6); /* PONG, not an answer to seq 7 */
    assert_int_equal(h_le32(buf + 8), 99);
    close(fd);
    tether_client_destroy(c);
}

/* A client call that times out cancels its handler (CANCEL, or the
 * server's deadline, whichever comes first: both say the caller is gone). */
static void
test_cancel_on_client_timeout(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *c = h_client(srv.addr[0]);
    uint8_t *out = NULL;
    size_t len = 0;
    H_ERR(tether_client_call_raw(c, "Test.Hold", "", 0, &out, &len, TETHER_CALL_TIMEOUT(200), NULL),
          TETHER_ETIMEDOUT);
    H_WAIT(hold_stats(c).now == 0, "the handler to stop");
    struct hold_stats s = hold_stats(c);
    assert_int_equal(s.canceled + s.timedout, 1);
    assert_int_equal(s.told, 1);
    tether_client_destroy(c);
}

static atomic_int closed_calls;

static void
on_closed(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    (void)arg;
    if (r->err == TETHER_ECLOSED) {
        atomic_fetch_add(&closed_calls, 1);
    }
}

/* Destroying a client with a call in flight cancels its handler. */
static void
test_cancel_on_client_destroy(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *probe = h_client(srv.addr[0]);
    tether_client *c = h_client(srv.addr[0]);
    H_OK(tether_client_call_async_raw(c, "Test.Hold", "", 0, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                      on_closed, NULL));
    H_WAIT(hold_stats(probe).now == 1, "the handler to start");
    tether_client_destroy(c);
    assert_int_equal(atomic_load(&closed_calls), 1);
    H_WAIT(hold_stats(probe).canceled == 1, "the handler to learn its caller left");
    H_WAIT(hold_stats(probe).now == 0, "the handler to stop");
    assert_int_equal(hold_stats(probe).told, 1);
    tether_client_destroy(probe);
}

static atomic_int canceled_calls;

static void
on_canceled(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    (void)arg;
    atomic_fetch_add(&canceled_calls, r->err == TETHER_ECANCELED ? 1 : 1000);
}

/* An explicit cancel of an async call, by address and by name: the
 * callback gets TETHER_ECANCELED at once and the handler is told. */
static void
test_explicit_cancel(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *probe = h_client(srv.addr[0]);
    char url[300];
    snprintf(url, sizeof url, "static:%s", srv.addr[0]);
    tether_client *byname = NULL;
    H_OK(h_client_by_name(url, "calculator", NULL, &byname));
    tether_client *clients[2] = {h_client(srv.addr[0]), byname};
    for (int i = 0; i < 2; i++) {
        uint64_t id = 0;
        tether_call_opts o = {.timeout_ms = H_CALL_MS, .id = &id};
        H_OK(tether_client_call_async_raw(clients[i], "Test.Hold", "", 0, &o, on_canceled, NULL));
        assert_true(id != 0);
        H_WAIT(hold_stats(probe).now == 1, "the handler to start");
        H_OK(tether_client_cancel(clients[i], id));
        H_WAIT(atomic_load(&canceled_calls) == i + 1, "the callback with TETHER_ECANCELED");
        H_WAIT(hold_stats(probe).canceled == (uint32_t)i + 1, "the handler to learn of it");
        H_WAIT(hold_stats(probe).now == 0, "the handler to stop");
        /* Done: a second cancel finds nothing. */
        H_ERR(tether_client_cancel(clients[i], id), TETHER_ENOENT);
        tether_client_destroy(clients[i]);
    }
    assert_int_equal(atomic_load(&canceled_calls), 2);
    tether_client_destroy(probe);
}

static void
test_metadata_round_trip(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *c = h_client(srv.addr[0]);
    const tether_meta meta[] = {{"trace", "abc-123"}, {"user", "bob"}, {"empty", ""}};
    tether_meta *tr = NULL;
    size_t ntr = 0;
    tether_call_opts opts = {
        .timeout_ms = H_CALL_MS, .meta = meta, .nmeta = 3, .trailers = &tr, .ntrailers = &ntr};
    uint8_t *out = NULL;
    size_t len = 0;
    H_OK(tether_client_call_raw(c, "Test.Meta", "", 0, &out, &len, &opts, NULL));
    const char *want = "trace=abc-123\nuser=bob\nempty=\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
    tether_free(out);
    assert_int_equal(ntr, 4);
    assert_string_equal(tr[0].key, "echo-trace");
    assert_string_equal(tr[0].value, "abc-123");
    assert_string_equal(tr[1].key, "echo-user");
    assert_string_equal(tr[1].value, "bob");
    assert_string_equal(tr[2].key, "echo-empty");
    assert_string_equal(tr[2].value, "");
    assert_string_equal(tr[3].key, "get-trace");
    assert_string_equal(tr[3].value, "abc-123");
    tether_free(tr);

    /* More pairs than the encoder measures ahead (8): all arrive, in order. */
    tether_meta many[12];
    char keys[12][8], vals[12][8], want_many[256] = "";
    for (int i = 0; i < 12; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        snprintf(vals[i], sizeof vals[i], "v%d", i * 7);
        many[i] = (tether_meta){keys[i], vals[i]};
        snprintf(want_many + strlen(want_many), sizeof want_many - strlen(want_many), "%s=%s\n",
                 keys[i], vals[i]);
    }
    tether_call_opts mopts = {.timeout_ms = H_CALL_MS, .meta = many, .nmeta = 12};
    H_OK(tether_client_call_raw(c, "Test.Meta", "", 0, &out, &len, &mopts, NULL));
    assert_int_equal(len, strlen(want_many));
    assert_memory_equal(out, want_many, len);
    tether_free(out);

    /* No metadata: no trailers. */
    tr = (tether_meta *)&opts; /* must be overwritten */
    opts.nmeta = 0;
    H_OK(tether_client_call_raw(c, "Test.Meta", "", 0, &out, &len, &opts, NULL));
    assert_int_equal(len, 0);
    assert_null(tr);
    assert_int_equal(ntr, 0);
    tether_free(out);
    tether_client_destroy(c);
}

static atomic_int meta_async_ok;

static void
on_meta_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    (void)arg;
    /* Trailers: echo-k, echo-trace, get-trace. */
    if (r->err == TETHER_OK && r->ntrailers == 3 && strcmp(r->trailers[0].key, "echo-k") == 0 &&
        strcmp(r->trailers[0].value, "v") == 0 && strcmp(r->trailers[2].key, "get-trace") == 0 &&
        r->len == 12 && memcmp(r->data, "k=v\ntrace=t\n", 12) == 0) {
        atomic_fetch_add(&meta_async_ok, 1);
    } else {
        atomic_fetch_add(&meta_async_ok, 1000);
    }
}

static void
test_metadata_async(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *c = h_client(srv.addr[0]);
    const tether_meta meta[] = {{"k", "v"}, {"trace", "t"}};
    tether_call_opts opts = {.timeout_ms = H_CALL_MS, .meta = meta, .nmeta = 2};
    for (int i = 0; i < 10; i++) {
        H_OK(tether_client_call_async_raw(c, "Test.Meta", "", 0, &opts, on_meta_reply, NULL));
    }
    H_WAIT(atomic_load(&meta_async_ok) >= 10, "ten async answers with trailers");
    tether_client_destroy(c);
    assert_int_equal(atomic_load(&meta_async_ok), 10);
}

/* Metadata over the server's limit fails that call with a clear error and
 * the connection stays; bad metadata is refused before sending. */
static void
test_metadata_limit(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *c = h_client(srv.addr[0]);
    char *big = malloc(9001);
    assert_non_null(big);
    memset(big, 'x', 9000);
    big[9000] = '\0';
    const tether_meta meta[] = {{"big", big}};
    tether_call_opts opts = {.timeout_ms = H_CALL_MS, .meta = meta, .nmeta = 1};
    uint8_t *out = NULL;
    size_t len = 0;
    char *et = NULL;
    H_ERR(tether_client_call_raw(c, "Test.Meta", "", 0, &out, &len, &opts, &et), TETHER_ELIMIT);
    assert_non_null(et);
    assert_non_null(strstr(et, "over the server's limit of 8192"));
    tether_free(et);
    free(big);
    /* The same connection serves on. */
    assert_int_equal(h_add(c, 2, 3), 5);
    const tether_meta bad[] = {{"", "v"}};
    opts.meta = bad;
    H_ERR(tether_client_call_raw(c, "Test.Meta", "", 0, &out, &len, &opts, NULL), TETHER_EINVAL);
    tether_client_destroy(c);
}

static void
test_fail_code_and_peer(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *c = h_client(srv.addr[0]);
    uint8_t *out = NULL;
    size_t len = 0;
    char *et = NULL;
    H_ERR(tether_client_call_raw(c, "Test.FailCode", "", 0, &out, &len, NULL, &et), TETHER_ENOENT);
    assert_string_equal(et, "no such thing");
    tether_free(et);
    H_OK(tether_client_call_raw(c, "Test.Peer", "", 0, &out, &len, NULL, NULL));
    char peer[128];
    assert_true(len > 0 && len < sizeof peer);
    memcpy(peer, out, len);
    peer[len] = '\0';
    tether_free(out);
    assert_true(strncmp(peer, "127.0.0.1:", 10) == 0);
    assert_true(strtol(peer + 10, NULL, 10) > 0);
    tether_client_destroy(c);
}

/* A version-1 client is told why it is refused. */
static void
test_v1_client_refused(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    int fd = h_raw_connect(srv.addr[0]);
    assert_int_equal(h_raw_send(fd, "\xF5TETHER\x01", 8), 0);
    uint8_t buf[512];
    size_t n = h_raw_frame(fd, buf, sizeof buf - 1, H_TIMEOUT_MS);
    assert_true(n > H_FRAME_HDR);
    assert_int_equal(buf[4], 3);          /* ERROR */
    assert_int_equal(h_le32(buf + 8), 0); /* the connection */
    assert_int_equal(h_le32(buf + 16), TETHER_EPROTO);
    buf[n] = '\0';
    assert_non_null(strstr((char *)buf + H_FRAME_HDR, "version 1 is not supported"));
    assert_true(h_raw_closed(fd, H_TIMEOUT_MS));
    close(fd);
}

static char *
ic_log(tether_client *c)
{
    uint8_t *out = NULL;
    size_t len = 0;
    H_OK(tether_client_call_raw(c, "Test.IcLog", "", 0, &out, &len, NULL, NULL));
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, out, len);
    s[len] = '\0';
    tether_free(out);
    return s;
}

static void
expect_log(tether_client *c, const char *want)
{
    char *got = ic_log(c);
    if (strcmp(got, want) != 0) {
        fail_msg("interceptor log: got \"%s\", want \"%s\"", got, want);
    }
    free(got);
}

/* Server interceptors run around every call, of every codec: befores in
 * order, afters in reverse with the caller's status; a refusal answers
 * with its code and text and skips the rest. */
static void
test_server_interceptors(void **state)
{
    (void)state;
    h_server_opts opts = {.interceptors = 1};
    h_spawn_server(&srv, &opts);
    tether_client *c = h_client(srv.addr[0]);
    assert_int_equal(h_add(c, 1, 2), 3);
    expect_log(c, "a(Calculator.Add)bB0A0;");

    const tether_meta deny[] = {{"deny", "yes"}};
    tether_call_opts o = {.meta = deny, .nmeta = 1};
    uint8_t *out = NULL;
    size_t len = 0;
    char *et = NULL;
    H_ERR(tether_client_call_raw(c, "Test.Echo", "x", 1, &out, &len, &o, &et), TETHER_EPERM);
    assert_string_equal(et, "denied by policy");
    tether_free(et);
    expect_log(c, "a(Test.Echo)");

    /* A handler's error is what the afters see. */
    H_ERR(tether_client_call_raw(c, "Test.FailCode", "", 0, &out, &len, NULL, NULL), TETHER_ENOENT);
    expect_log(c, "a(Test.FailCode)bB19A19;");

    /* Go's codecs go through the same chain. */
    for (int codec = TETHER_CODEC_GOB; codec <= TETHER_CODEC_JSONRPC; codec++) {
        tether_client_config cfg;
        tether_client_config_init(&cfg);
        cfg.codec = (tether_codec)codec;
        tether_client *g = NULL;
        H_OK(tether_client_create(srv.addr[0], &cfg, &g));
        assert_int_equal(h_add(g, 2, 2), 4);
        tether_client_destroy(g);
        expect_log(c, "a(Calculator.Add)bB0A0;");
    }
    tether_client_destroy(c);
}

static char cic_log[256];
static size_t cic_len;

static tether_err
cic_before_1(tether_client *c, const char *method, void *arg)
{
    (void)c;
    (void)arg;
    cic_len += (size_t)snprintf(cic_log + cic_len, sizeof cic_log - cic_len, "1");
    return strcmp(method, "Test.Peer") == 0 ? TETHER_EPERM : TETHER_OK;
}

static void
cic_after_1(tether_client *c, const char *method, tether_err st, uint64_t ns, void *arg)
{
    (void)c;
    (void)method;
    (void)arg;
    cic_len += (size_t)snprintf(cic_log + cic_len, sizeof cic_log - cic_len, "!1:%d%s;", (int)st,
                                ns > 0 ? "" : "(0ns)");
}

static tether_err
cic_before_2(tether_client *c, const char *method, void *arg)
{
    (void)c;
    (void)method;
    (void)arg;
    cic_len += (size_t)snprintf(cic_log + cic_len, sizeof cic_log - cic_len, "2");
    return TETHER_OK;
}

static void
cic_after_2(tether_client *c, const char *method, tether_err st, uint64_t ns, void *arg)
{
    (void)c;
    (void)method;
    (void)arg;
    (void)ns;
    cic_len += (size_t)snprintf(cic_log + cic_len, sizeof cic_log - cic_len, "!2:%d", (int)st);
}

static atomic_int cic_async;

static void
on_cic_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    (void)arg;
    /* The afters ran before this callback. */
    if (r->err == TETHER_OK && strstr(cic_log, "!1:0;") != NULL) {
        atomic_store(&cic_async, 1);
    } else {
        atomic_store(&cic_async, -1);
    }
}

/* Client interceptors: order, refusal before sending, async afters before
 * the callback; the client's default metadata goes with every call. */
static void
test_client_interceptors(void **state)
{
    (void)state;
    h_server_opts sopts = {.interceptors = 1};
    h_spawn_server(&srv, &sopts);
    const tether_client_interceptor ics[] = {{cic_before_1, cic_after_1, NULL},
                                             {cic_before_2, cic_after_2, NULL}};
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.interceptors = ics;
    cfg.ninterceptors = 2;
    tether_client *c = NULL;
    H_OK(tether_client_create(srv.addr[0], &cfg, &c));
    assert_int_equal(h_add(c, 1, 1), 2);
    assert_string_equal(cic_log, "12!2:0!1:0;");
    free(ic_log(c)); /* the server's log starts empty */
    cic_len = 0;
    cic_log[0] = '\0';
    uint8_t *out = NULL;
    size_t len = 0;
    H_ERR(tether_client_call_raw(c, "Test.Peer", "", 0, &out, &len, NULL, NULL), TETHER_EPERM);
    assert_string_equal(cic_log, "1");
    expect_log(c, ""); /* it never reached the server */
    cic_len = 0;
    cic_log[0] = '\0';
    H_OK(tether_client_call_async_raw(c, "Test.Echo", "x", 1, NULL, on_cic_reply, NULL));
    H_WAIT(atomic_load(&cic_async) != 0, "the async call's callback");
    assert_int_equal(atomic_load(&cic_async), 1);
    tether_client_destroy(c);

    /* Default metadata: every call of this client says deny=yes. */
    const tether_meta deny[] = {{"deny", "yes"}};
    tether_client_config_init(&cfg);
    cfg.meta = deny;
    cfg.nmeta = 1;
    H_OK(tether_client_create(srv.addr[0], &cfg, &c));
    H_ERR(tether_client_call_raw(c, "Test.Echo", "x", 1, &out, &len, NULL, NULL), TETHER_EPERM);
    tether_client_destroy(c);
}

/* One method lookup for every codec: the same codes and Go's exact texts,
 * the name split at its last dot as Go does. */
static void
test_unknown_names_every_codec(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    static const struct {
        const char *name;
        tether_err code;
        const char *text;
    } cases[] = {
        {"Calculator.Nope", TETHER_ENOMETHOD, "rpc: can't find method Calculator.Nope"},
        {"Nope.Add", TETHER_ENOSERVICE, "rpc: can't find service Nope.Add"},
        {"Calculator.Add.More", TETHER_ENOSERVICE, "rpc: can't find service Calculator.Add.More"},
    };
    for (int codec = TETHER_CODEC_NATIVE; codec <= TETHER_CODEC_JSONRPC; codec++) {
        tether_client_config cfg;
        tether_client_config_init(&cfg);
        cfg.codec = (tether_codec)codec;
        tether_client *c = NULL;
        H_OK(tether_client_create(srv.addr[0], &cfg, &c));
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            Args req = ARGS__INIT;
            ProtobufCMessage *reply = NULL;
            char *et = NULL;
            tether_err rc =
                tether_client_call(c, cases[i].name, &req.base,
                                   &google__protobuf__int64_value__descriptor, &reply, NULL, &et);
            if (rc != cases[i].code || et == NULL || strcmp(et, cases[i].text) != 0) {
                fail_msg("codec %d, %s: got %s \"%s\", want %s \"%s\"", codec, cases[i].name,
                         tether_err_name(rc), et != NULL ? et : "", tether_err_name(cases[i].code),
                         cases[i].text);
            }
            tether_free(et);
        }
        tether_client_destroy(c);
    }
}

/* tether call prints a remote error text with its control characters
 * escaped: a server cannot drive the caller's terminal. */
static void
test_cli_escapes_remote_text(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    char tool[512];
    snprintf(tool, sizeof tool, "%s/tether", getenv("TETHER_BIN_DIR"));
    char *argv[] = {tool, "call", srv.addr[0], "Test.FailEscape", "{}", NULL};
    char out[4096], err[4096];
    int st = h_run(argv, out, err, sizeof out);
    assert_int_not_equal(st, 0);
    assert_null(strchr(err, 0x1b));
    assert_null(strchr(err, '\a'));
    assert_non_null(strstr(err, "bad\\x1b[2Jthing\\x07"));
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_handler_sees_deadline, teardown),
        cmocka_unit_test_teardown(test_deadline_cancels_on_server, teardown),
        cmocka_unit_test_teardown(test_cancel_frame, teardown),
        cmocka_unit_test_teardown(test_cancel_on_client_timeout, teardown),
        cmocka_unit_test_teardown(test_cancel_on_client_destroy, teardown),
        cmocka_unit_test_teardown(test_explicit_cancel, teardown),
        cmocka_unit_test_teardown(test_metadata_round_trip, teardown),
        cmocka_unit_test_teardown(test_metadata_async, teardown),
        cmocka_unit_test_teardown(test_metadata_limit, teardown),
        cmocka_unit_test_teardown(test_fail_code_and_peer, teardown),
        cmocka_unit_test_teardown(test_v1_client_refused, teardown),
        cmocka_unit_test_teardown(test_server_interceptors, teardown),
        cmocka_unit_test_teardown(test_unknown_names_every_codec, teardown),
        cmocka_unit_test_teardown(test_cli_escapes_remote_text, teardown),
        cmocka_unit_test_teardown(test_client_interceptors, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    h_cleanup();
    return rc;
}
