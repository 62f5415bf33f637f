/*
 * client_codec.c - a client speaking Go's net/rpc codecs (gob, jsonrpc) to
 * one address, so C programs can call existing Go servers (and tether
 * servers, which understand both).
 *
 * Simpler than the native client (client.c) and built for correctness
 * rather than the last microsecond: callers encode and send their request
 * themselves under the write lock; one reader thread per connection reads
 * replies, completes synchronous callers (condition variable) and runs
 * asynchronous callbacks; it also expires asynchronous deadlines.  A
 * broken connection fails every pending call; the next call connects
 * again with fresh codec state.
 *
 * Codec state is per direction: 'enc' is used only under the write lock
 * (encode_request), 'dec' only by the reader thread (decode_reply,
 * unpack), so neither needs more locking; gob keeps separate type tables
 * per direction anyway.
 *
 * Locks: mu (pending calls, connection fields) before wmu (enc, out,
 * writes).  Callbacks run on the reader thread with no lock held.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "codec/gob/gob.h"
#include "codec/jsonrpc/jsonrpc.h"
#include "codec/pbjson/pbjson.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "net/sock.h"
#include "rpc/client_int.h"

#define SCAN_MS 10   /* deadline scan period while asynchronous calls wait */
#define IDLE_MS 200  /* poll period otherwise (to notice destroy) */
#define MAX_NAME 1024

typedef struct cc_call {
    uint64_t seq;
    struct cc_call *prev, *next; /* pending calls */
    struct cc_call *cnext;       /* a list of calls to complete */
    const ProtobufCMessageDescriptor *desc;
    int json; /* jsonrpc text mode: the result's text is the answer */
    tether_reply_fn fn; /* async; NULL for sync */
    void *arg;
    tether_client *outer;
    uint64_t deadline_ns;
    /* Outcome. */
    int done;
    tether_err err;
    ProtobufCMessage *msg;
    char *text;     /* error text (tt_malloc) */
    uint8_t *data;  /* reply body (async) or result text (json) */
    size_t len;
} cc_call;

struct tt_cc {
    tether_client_config cfg;
    tt_addr addr;
    const tt_codec_ops *ops;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* some synchronous call completed */
    pthread_mutex_t wmu;
    int fd;
    void *enc, *dec;
    tt_buf out; /* under wmu */
    tt_buf in;  /* reader only */
    cc_call *all;
    size_t npending, nasync;
    uint64_t next_seq;
    pthread_t reader;
    int reader_live; /* started and not joined */
    int closing;
};

static __thread struct tt_cc *tls_cc; /* set on a reader thread */

/* ---------------------------------------------------------------------- */
/* Pending calls (under mu)                                               */

static void
pend_insert(struct tt_cc *cc, cc_call *p)
{
    TT_DLIST_PUSH(&cc->all, p);
    cc->npending++;
    cc->nasync += p->fn != NULL;
}

static void
pend_remove(struct tt_cc *cc, cc_call *p)
{
    TT_DLIST_REMOVE(&cc->all, p);
    cc->npending--;
    cc->nasync -= p->fn != NULL;
}

static cc_call *
pend_find(struct tt_cc *cc, uint64_t seq)
{
    for (cc_call *p = cc->all; p != NULL; p = p->next) {
        if (p->seq == seq) {
            return p;
        }
    }
    return NULL;
}

/* Free what p's outcome still owns. */
static void
call_clear(cc_call *p)
{
    if (p->msg != NULL) {
        protobuf_c_message_free_unpacked(p->msg, &tt_pb_allocator);
    }
    tt_free(p->text);
    tt_free(p->data);
}

static void
call_free(cc_call *p)
{
    call_clear(p);
    tt_free(p);
}

/* A copy of a reply body (one spare byte, so a zero length is no NULL). */
static uint8_t *
body_copy(const uint8_t *body, size_t len)
{
    uint8_t *data = tt_malloc(len + 1);
    if (data != NULL && len > 0) {
        memcpy(data, body, len);
    }
    return data;
}

/* Run the callbacks of a list of completed asynchronous calls (reader
 * thread, no lock held), then free them. */
static void
run_callbacks(cc_call *list)
{
    /* The list is newest first: reverse to completion order. */
    cc_call *rev = NULL;
    while (list != NULL) {
        cc_call *n = list->cnext;
        list->cnext = rev;
        rev = list;
        list = n;
    }
    while (rev != NULL) {
        cc_call *p = rev;
        rev = p->cnext;
        tether_reply r = {.err = p->err, .errtext = p->text, .msg = p->msg,
                          .data = p->err == TETHER_OK ? p->data : NULL,
                          .len = p->err == TETHER_OK ? p->len : 0};
        p->msg = NULL; /* the callback owns it */
        p->fn(p->outer, &r, p->arg);
        call_free(p);
    }
}

/* Complete p (removed from the pending list) under mu: wake a synchronous
 * caller, or queue an asynchronous one on *done. */
static void
complete_locked(struct tt_cc *cc, cc_call *p, cc_call **done)
{
    p->done = 1;
    if (p->fn != NULL) {
        p->cnext = *done;
        *done = p;
    } else {
        pthread_cond_broadcast(&cc->cv);
    }
}

/* ---------------------------------------------------------------------- */
/* The reader thread                                                      */

/* Go's server answers unknown names with fixed texts; give them the codes
 * the native protocol uses. */
static tether_err
remote_code(const char *text)
{
    if (strncmp(text, "rpc: can't find service ", 24) == 0) {
        return TETHER_ENOSERVICE;
    }
    if (strncmp(text, "rpc: can't find method ", 23) == 0 ||
        strncmp(text, "rpc: service/method request ill-formed", 38) == 0) {
        return TETHER_ENOMETHOD;
    }
    return TETHER_EREMOTE;
}

/* One reply: find its call, unpack, complete. */
static void
on_reply(struct tt_cc *cc, const tt_rpc_msg *m, cc_call **done)
{
    pthread_mutex_lock(&cc->mu);
    cc_call *p = pend_find(cc, m->seq);
    const ProtobufCMessageDescriptor *desc = p != NULL ? p->desc : NULL;
    int json = p != NULL && p->json;
    int async = p != NULL && p->fn != NULL;
    pthread_mutex_unlock(&cc->mu);
    if (p == NULL) {
        return; /* a call that timed out */
    }
    tether_err err = TETHER_OK;
    char *text = NULL;
    ProtobufCMessage *msg = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    if (m->status != TETHER_OK) {
        text = tt_strndup(m->errtext != NULL ? m->errtext : "", m->errtext_len);
        err = text != NULL ? remote_code(text) : TETHER_ENOMEM;
    } else if (json) {
        data = (uint8_t *)tt_strndup((const char *)m->body, m->body_len);
        len = m->body_len;
        err = data != NULL ? TETHER_OK : TETHER_ENOMEM;
    } else if (desc == NULL && async) {
        /* An async call that wants the bytes only. */
        data = body_copy(m->body, m->body_len);
        len = m->body_len;
        err = data != NULL ? TETHER_OK : TETHER_ENOMEM;
    } else {
        err = desc != NULL ? cc->ops->unpack(cc->dec, desc, m->body, m->body_len, &msg)
                           : TETHER_EBADREPLY;
        if (err != TETHER_OK) {
            const char *why = cc->ops == &tt_codec_gob ? tt_gob_last_error(cc->dec)
                                                       : tt_jsonrpc_last_error(cc->dec);
            text = tt_strdup(why);
            err = TETHER_EBADREPLY;
        } else if (async) {
            /* The callback also sees the bytes as received. */
            data = body_copy(m->body, m->body_len);
            len = data != NULL ? m->body_len : 0;
        }
    }
    pthread_mutex_lock(&cc->mu);
    p = pend_find(cc, m->seq);
    if (p == NULL) {
        pthread_mutex_unlock(&cc->mu);
        if (msg != NULL) {
            protobuf_c_message_free_unpacked(msg, &tt_pb_allocator);
        }
        tt_free(text);
        tt_free(data);
        return;
    }
    pend_remove(cc, p);
    p->err = err;
    p->text = text;
    p->msg = msg;
    p->data = data;
    p->len = len;
    complete_locked(cc, p, done);
    pthread_mutex_unlock(&cc->mu);
}

/* Decode every complete reply in cc->in.  TETHER_OK or the error that
 * breaks the stream. */
static tether_err
process(struct tt_cc *cc)
{
    while (tt_buf_size(&cc->in) > 0) {
        tt_rpc_msg m;
        memset(&m, 0, sizeof m);
        size_t used = 0;
        tether_err rc =
            cc->ops->decode_reply(cc->dec, tt_buf_head(&cc->in), tt_buf_size(&cc->in), &used, &m);
        if (rc == TETHER_EAGAIN) {
            return TETHER_OK;
        }
        if (rc != TETHER_OK) {
            return rc;
        }
        /* gob type definitions alone, or whitespace, carry no reply. */
        if (m.method != NULL || m.body != NULL || m.status != TETHER_OK) {
            cc_call *done = NULL;
            on_reply(cc, &m, &done);
            run_callbacks(done);
        }
        if (used == 0) {
            return TETHER_OK;
        }
        tt_buf_consume(&cc->in, used);
    }
    return TETHER_OK;
}

static void
expire(struct tt_cc *cc)
{
    uint64_t now = tt_now_ns();
    cc_call *done = NULL;
    pthread_mutex_lock(&cc->mu);
    for (cc_call *p = cc->all, *n; p != NULL; p = n) {
        n = p->next;
        if (p->fn != NULL && p->deadline_ns <= now) {
            pend_remove(cc, p);
            p->err = TETHER_ETIMEDOUT;
            complete_locked(cc, p, &done);
        }
    }
    pthread_mutex_unlock(&cc->mu);
    run_callbacks(done);
}

static void *
reader_main(void *arg)
{
    struct tt_cc *cc = arg;
    tls_cc = cc;
    pthread_mutex_lock(&cc->mu);
    int fd = cc->fd;
    pthread_mutex_unlock(&cc->mu);
    tether_err why = TETHER_OK;
    while (why == TETHER_OK) {
        pthread_mutex_lock(&cc->mu);
        int timed = cc->nasync > 0;
        int closing = cc->closing;
        pthread_mutex_unlock(&cc->mu);
        if (closing) {
            why = TETHER_ECLOSED;
            break;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, timed ? SCAN_MS : IDLE_MS);
        if (timed) {
            expire(cc);
        }
        if (r <= 0) {
            continue;
        }
        if (tt_buf_reserve(&cc->in, 65536) != TETHER_OK) {
            why = TETHER_ENOMEM;
            break;
        }
        ssize_t n = recv(fd, cc->in.data + cc->in.len, cc->in.cap - cc->in.len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            why = TETHER_ECONNRESET;
            break;
        }
        if (n > 0) {
            cc->in.len += (size_t)n;
            tether_err rc = process(cc);
            if (rc != TETHER_OK) {
                tt_log(TETHER_LOG_WARN, "%s reply stream broken: %s", cc->ops->name,
                       tether_strerror(rc));
                why = rc == TETHER_EMSGSIZE ? TETHER_EMSGSIZE : TETHER_EPROTO;
            }
        }
    }
    /* The connection is over: fail what waits on it. */
    cc_call *done = NULL;
    pthread_mutex_lock(&cc->mu);
    if (cc->closing) {
        why = TETHER_ECLOSED;
    }
    while (cc->all != NULL) {
        cc_call *p = cc->all;
        pend_remove(cc, p);
        p->err = why;
        complete_locked(cc, p, &done);
    }
    pthread_mutex_lock(&cc->wmu);
    close(fd);
    if (cc->fd == fd) {
        cc->fd = -1;
    }
    pthread_mutex_unlock(&cc->wmu);
    pthread_mutex_unlock(&cc->mu);
    run_callbacks(done);
    cc->in.off = cc->in.len = 0;
    tls_cc = NULL;
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Connecting and sending                                                 */

static void
states_free(struct tt_cc *cc)
{
    if (cc->enc != NULL) {
        cc->ops->fini(cc->enc);
        tt_free(cc->enc);
        cc->enc = NULL;
    }
    if (cc->dec != NULL) {
        cc->ops->fini(cc->dec);
        tt_free(cc->dec);
        cc->dec = NULL;
    }
}

/* Connect if not connected (under mu). */
static tether_err
ensure_conn_locked(struct tt_cc *cc)
{
    if (cc->fd >= 0) {
        return TETHER_OK;
    }
    if (cc->reader_live) {
        /* The last connection's reader is finishing (it cleared fd). */
        pthread_mutex_unlock(&cc->mu);
        pthread_join(cc->reader, NULL);
        pthread_mutex_lock(&cc->mu);
        cc->reader_live = 0;
        if (cc->fd >= 0) {
            return TETHER_OK; /* another caller connected meanwhile */
        }
    }
    int fd;
    tether_err rc = tt_sock_connect(&cc->addr, cc->cfg.connect_timeout_ms, &fd);
    if (rc != TETHER_OK) {
        return rc;
    }
    pthread_mutex_lock(&cc->wmu);
    states_free(cc);
    cc->enc = tt_calloc(1, cc->ops->state_size);
    cc->dec = tt_calloc(1, cc->ops->state_size);
    if (cc->enc == NULL || cc->dec == NULL) {
        rc = TETHER_ENOMEM;
    }
    if (rc == TETHER_OK) {
        rc = cc->ops->init(cc->enc, cc->cfg.max_frame_size);
        if (rc != TETHER_OK) {
            tt_free(cc->enc);
            cc->enc = NULL;
        }
    }
    if (rc == TETHER_OK) {
        rc = cc->ops->init(cc->dec, cc->cfg.max_frame_size);
        if (rc != TETHER_OK) {
            tt_free(cc->dec);
            cc->dec = NULL;
        }
    }
    cc->out.off = cc->out.len = 0;
    if (rc == TETHER_OK) {
        cc->fd = fd;
    }
    pthread_mutex_unlock(&cc->wmu);
    if (rc == TETHER_OK) {
        int e = pthread_create(&cc->reader, NULL, reader_main, cc);
        if (e == 0) {
            cc->reader_live = 1;
            return TETHER_OK;
        }
        rc = tt_err_errno(e);
        cc->fd = -1;
    }
    close(fd);
    return rc;
}

/* Append a jsonrpc request whose params[0] is the JSON text json_in. */
static tether_err
encode_json_request(tt_buf *out, uint64_t seq, const char *method, const char *json_in)
{
    size_t before = out->len;
    tether_err rc = tt_buf_append(out, "{\"method\":", 10);
    if (rc == TETHER_OK) {
        rc = tt_json_write_string(out, method, strlen(method));
    }
    if (rc == TETHER_OK) {
        rc = tt_buf_append(out, ",\"params\":[", 11);
    }
    if (rc == TETHER_OK) {
        rc = tt_json_compact(out, json_in, strlen(json_in));
    }
    if (rc == TETHER_OK) {
        rc = tt_buf_append(out, "],\"id\":", 7);
    }
    if (rc == TETHER_OK) {
        rc = tt_json_write_u64(out, seq);
    }
    if (rc == TETHER_OK) {
        rc = tt_buf_append(out, "}\n", 2);
    }
    if (rc != TETHER_OK) {
        out->len = before;
    }
    return rc;
}

/* Encode and send p's request (caller holds neither lock). */
static tether_err
send_request(struct tt_cc *cc, cc_call *p, const char *method, const ProtobufCMessage *req,
             const char *json_in)
{
    pthread_mutex_lock(&cc->wmu);
    int fd = cc->fd;
    if (fd < 0 || cc->enc == NULL) {
        pthread_mutex_unlock(&cc->wmu);
        return TETHER_ECONNRESET;
    }
    tether_err rc;
    if (json_in != NULL) {
        rc = encode_json_request(&cc->out, p->seq, method, json_in);
    } else {
        rc = cc->ops->encode_request(cc->enc, &cc->out, p->seq, method, strlen(method), req);
    }
    if (rc != TETHER_OK) {
        pthread_mutex_unlock(&cc->wmu);
        return rc;
    }
    while (tt_buf_size(&cc->out) > 0) {
        ssize_t n = send(fd, tt_buf_head(&cc->out), tt_buf_size(&cc->out), MSG_NOSIGNAL);
        if (n > 0) {
            tt_buf_consume(&cc->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uint64_t now = tt_now_ns();
            if (now < p->deadline_ns) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                int ms = (int)((p->deadline_ns - now) / 1000000u) + 1;
                if (poll(&pfd, 1, ms) >= 0) {
                    continue;
                }
            }
        }
        /* A stream cut in the middle of a message is broken for good: the
         * reader sees the shutdown and fails every call. */
        cc->out.off = cc->out.len = 0;
        shutdown(fd, SHUT_RDWR);
        pthread_mutex_unlock(&cc->wmu);
        return TETHER_OK;
    }
    pthread_mutex_unlock(&cc->wmu);
    return TETHER_OK;
}

/* Register a call and send its request.  On error the call is not
 * pending (and, for async calls, its callback never runs). */
static tether_err
start(struct tt_cc *cc, cc_call *p, const char *method, const ProtobufCMessage *req,
      const char *json_in, uint32_t timeout_ms)
{
    size_t mlen = method != NULL ? strlen(method) : 0;
    if (mlen == 0 || mlen > MAX_NAME || (req == NULL && json_in == NULL)) {
        return TETHER_EINVAL;
    }
    if (json_in != NULL) {
        tt_json_reader r = {json_in, json_in + strlen(json_in), 0, false};
        if (cc->ops != &tt_codec_jsonrpc || tt_json_skip(&r) != TETHER_OK) {
            return TETHER_EINVAL;
        }
        tt_json_skip_ws(&r);
        if (r.p != r.end) {
            return TETHER_EINVAL;
        }
    }
    p->deadline_ns = tt_now_ns() + (uint64_t)(timeout_ms != 0 ? timeout_ms
                                                              : cc->cfg.call_timeout_ms) *
                                       1000000ull;
    pthread_mutex_lock(&cc->mu);
    if (cc->closing) {
        pthread_mutex_unlock(&cc->mu);
        return TETHER_ECLOSED;
    }
    tether_err rc = ensure_conn_locked(cc);
    if (rc != TETHER_OK) {
        pthread_mutex_unlock(&cc->mu);
        return rc;
    }
    p->seq = cc->next_seq++;
    pend_insert(cc, p);
    pthread_mutex_unlock(&cc->mu);
    rc = send_request(cc, p, method, req, json_in);
    if (rc != TETHER_OK) {
        pthread_mutex_lock(&cc->mu);
        if (pend_find(cc, p->seq) == p) {
            pend_remove(cc, p);
        } else {
            /* The reader completed it meanwhile (the connection broke):
             * its callback runs, or the sync caller reads p->err. */
            rc = TETHER_OK;
        }
        pthread_mutex_unlock(&cc->mu);
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Entry points (client.c delegates here)                                 */

tether_err
tt_cc_create(const char *addr, const tether_client_config *cfg, struct tt_cc **out)
{
    struct tt_cc *cc = tt_calloc(1, sizeof *cc);
    if (cc == NULL) {
        return TETHER_ENOMEM;
    }
    tt_client_config_resolve(&cc->cfg, cfg);
    cc->cfg.codec = cfg->codec;
    if (cfg->codec == TETHER_CODEC_GOB) {
        cc->ops = &tt_codec_gob;
    } else if (cfg->codec == TETHER_CODEC_JSONRPC) {
        cc->ops = &tt_codec_jsonrpc;
    } else {
        tt_free(cc);
        return TETHER_EINVAL;
    }
    cc->fd = -1;
    tether_err rc = tt_addr_parse(addr, &cc->addr);
    if (rc != TETHER_OK) {
        tt_free(cc);
        return rc;
    }
    pthread_mutex_init(&cc->mu, NULL);
    pthread_mutex_init(&cc->wmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cc->cv, &ca);
    pthread_condattr_destroy(&ca);
    /* Connect now, as the native client does, so a bad address shows. */
    pthread_mutex_lock(&cc->mu);
    rc = ensure_conn_locked(cc);
    pthread_mutex_unlock(&cc->mu);
    if (rc != TETHER_OK) {
        tt_cc_destroy(cc);
        return rc;
    }
    *out = cc;
    return TETHER_OK;
}

void
tt_cc_destroy(struct tt_cc *cc)
{
    if (cc == NULL) {
        return;
    }
    pthread_mutex_lock(&cc->mu);
    cc->closing = 1;
    if (cc->fd >= 0) {
        shutdown(cc->fd, SHUT_RDWR); /* wakes the reader */
    }
    int live = cc->reader_live;
    cc->reader_live = 0;
    pthread_mutex_unlock(&cc->mu);
    if (live) {
        pthread_join(cc->reader, NULL); /* it fails every pending call */
    }
    states_free(cc);
    tt_buf_free(&cc->out);
    tt_buf_free(&cc->in);
    pthread_cond_destroy(&cc->cv);
    pthread_mutex_destroy(&cc->wmu);
    pthread_mutex_destroy(&cc->mu);
    tt_free(cc);
}

size_t
tt_cc_pending(struct tt_cc *cc)
{
    pthread_mutex_lock(&cc->mu);
    size_t n = cc->npending;
    pthread_mutex_unlock(&cc->mu);
    return n;
}

tether_err
tt_cc_call(struct tt_cc *cc, const char *method, const ProtobufCMessage *req,
           const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg, const char *json_in,
           char **json_out, uint32_t timeout_ms, char **errtext)
{
    if (errtext != NULL) {
        *errtext = NULL;
    }
    if (tls_cc != NULL) {
        return TETHER_ESTATE; /* a callback waiting for its own reader */
    }
    cc_call p;
    memset(&p, 0, sizeof p);
    p.desc = desc;
    p.json = json_in != NULL;
    tether_err rc = start(cc, &p, method, req, json_in, timeout_ms);
    if (rc != TETHER_OK) {
        return rc;
    }
    struct timespec ts = tt_timespec_ns(p.deadline_ns);
    pthread_mutex_lock(&cc->mu);
    while (!p.done) {
        if (pthread_cond_timedwait(&cc->cv, &cc->mu, &ts) == ETIMEDOUT && !p.done) {
            pend_remove(cc, &p);
            p.done = 1;
            p.err = TETHER_ETIMEDOUT;
        }
    }
    pthread_mutex_unlock(&cc->mu);
    if (p.err == TETHER_OK) {
        if (json_out != NULL) {
            *json_out = (char *)p.data;
            p.data = NULL;
        } else if (msg != NULL) {
            *msg = p.msg;
            p.msg = NULL;
        }
    } else if (errtext != NULL) {
        *errtext = p.text;
        p.text = NULL;
    }
    call_clear(&p);
    return p.err;
}

tether_err
tt_cc_call_async(struct tt_cc *cc, tether_client *outer, const char *method,
                 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                 uint32_t timeout_ms, tether_reply_fn fn, void *arg)
{
    if (fn == NULL || req == NULL) {
        return TETHER_EINVAL;
    }
    cc_call *p = tt_calloc(1, sizeof *p);
    if (p == NULL) {
        return TETHER_ENOMEM;
    }
    p->desc = desc;
    p->fn = fn;
    p->arg = arg;
    p->outer = outer;
    tether_err rc = start(cc, p, method, req, NULL, timeout_ms);
    if (rc != TETHER_OK) {
        call_free(p);
    }
    return rc;
}
