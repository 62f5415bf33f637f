/*
 * server.c - the RPC server's setup and threads: configuration, the method
 * table and its one lookup, listeners, stats, starting the I/O threads and
 * stopping them (see server_int.h for the threading model, server_conn.c
 * for connections, server_call.c for calls, drain.c for the stop
 * sequence).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "codec/native/frame.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/list.h"
#include "core/log.h"
#include "core/thread.h"
#include "rpc/server_int.h"
#include "rpc/server_metrics.h"

/* Connections a server can hold with the descriptors it may open: its
 * soft RLIMIT_NOFILE less a reserve for listeners, logs, registry and
 * worker files, and at most 65536. */
static uint32_t
default_max_connections(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return 65536;
    }
    rlim_t n = rl.rlim_cur > 256 ? rl.rlim_cur - 128 : rl.rlim_cur / 2;
    if (n < 1) {
        n = 1;
    }
    return n > 65536 ? 65536 : (uint32_t)n;
}

void
tether_server_config_init(tether_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->io_threads = n > 0 ? (int)n : 1;
    cfg->worker_threads = 4;
    cfg->max_frame_size = 4u * 1024 * 1024; /* gRPC's default */
    cfg->max_inflight_per_conn = 4096;
    cfg->max_metadata_size = 8192;
    cfg->max_connections = default_max_connections();
    cfg->drain_timeout_ms = 10000;
    cfg->grace_ms = 0;
    cfg->partial_timeout_ms = 30000;
    cfg->idle_timeout_ms = 0;
    cfg->max_input_buffered = 64u * 1024 * 1024;
    cfg->max_queued_blocking = 1024;
    cfg->stall_ms = 2000;
}

static void __attribute__((format(printf, 2, 3))) set_err(tether_server *srv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(srv->errmsg, sizeof srv->errmsg, fmt, ap);
    va_end(ap);
}

tether_err
tether_server_create(const tether_server_config *cfg, tether_server **out)
{
    if (out == NULL) {
        return TETHER_EINVAL;
    }
    tether_server_config def;
    tether_server_config_init(&def);
    tether_server *srv = tt_calloc(1, sizeof *srv);
    if (srv == NULL) {
        return TETHER_ENOMEM;
    }
    srv->cfg = def;
    if (cfg != NULL) {
        /* Zero fields keep their defaults. */
        if (cfg->io_threads > 0) {
            srv->cfg.io_threads = cfg->io_threads;
        }
        if (cfg->worker_threads > 0) {
            srv->cfg.worker_threads = cfg->worker_threads;
        }
        if (cfg->max_frame_size > 0) {
            srv->cfg.max_frame_size = cfg->max_frame_size;
        }
        if (cfg->max_inflight_per_conn > 0) {
            srv->cfg.max_inflight_per_conn = cfg->max_inflight_per_conn;
        }
        if (cfg->max_connections > 0) {
            srv->cfg.max_connections = cfg->max_connections;
        }
        if (cfg->partial_timeout_ms > 0) {
            srv->cfg.partial_timeout_ms = cfg->partial_timeout_ms;
        }
        if (cfg->idle_timeout_ms > 0) {
            srv->cfg.idle_timeout_ms = cfg->idle_timeout_ms;
        }
        if (cfg->max_input_buffered > 0) {
            srv->cfg.max_input_buffered = cfg->max_input_buffered;
        }
        if (cfg->max_queued_blocking > 0) {
            srv->cfg.max_queued_blocking = cfg->max_queued_blocking;
        }
        if (cfg->drain_timeout_ms > 0) {
            srv->cfg.drain_timeout_ms = cfg->drain_timeout_ms;
        }
        srv->cfg.grace_ms = cfg->grace_ms;
        srv->cfg.stall_ms = cfg->stall_ms; /* 0: the watchdog is off */
        if (cfg->max_metadata_size > 0) {
            srv->cfg.max_metadata_size = cfg->max_metadata_size;
        }
    }
    /* TLS: the files are read now, so a bad one fails here; the strings
     * are not kept. */
    memset(&srv->cfg.tls, 0, sizeof srv->cfg.tls);
    if (cfg != NULL && (cfg->tls.cert_file != NULL || cfg->tls.key_file != NULL ||
                        cfg->tls.ca_file != NULL)) {
        tether_err rc = tt_tls_ctx_create(&cfg->tls, 1, &srv->tls, srv->errmsg, sizeof srv->errmsg);
        if (rc != TETHER_OK) {
            tt_log(TETHER_LOG_WARN, "%s", srv->errmsg);
            tt_free(srv);
            return rc;
        }
        srv->cfg.tls.require_client_cert = cfg->tls.require_client_cert;
        srv->cfg.tls.allow_plaintext = cfg->tls.allow_plaintext;
        srv->cfg.tls.min_version = cfg->tls.min_version;
    }
    if (srv->cfg.max_frame_size < TT_FRAME_HDR + TT_FRAME_MAX_NAME || srv->cfg.io_threads > 256 ||
        srv->cfg.max_metadata_size > TT_CTX_MAX) {
        tt_tls_ctx_unref(srv->tls);
        tt_free(srv);
        return TETHER_EINVAL;
    }
    srv->shutdown_fd = -1;
    srv->drained_fd = -1;
    srv->wd_fd = -1;
    pthread_mutex_init(&srv->reg_mu, NULL);
    srv->listed = 1;
    atomic_store(&srv->app_serving, 1);
    srv->g = tt_calloc(1, sizeof *srv->g);
    if (srv->g == NULL) {
        tt_tls_ctx_unref(srv->tls);
        tt_free(srv);
        return TETHER_ENOMEM;
    }
    pthread_mutex_init(&srv->g->mu, NULL);
    atomic_store(&srv->g->refs, 1);
    srv->shutdown_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    srv->drained_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    srv->wd_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->shutdown_fd < 0 || srv->drained_fd < 0 || srv->wd_fd < 0) {
        int e = errno;
        tether_server_destroy(srv);
        return tt_err_errno(e);
    }
    pthread_mutex_init(&srv->mu, NULL);
    tt_cond_init_monotonic(&srv->cv);
    atomic_store(&srv->state, SRV_NEW);
    if (cfg != NULL && cfg->metrics_addr != NULL &&
        tt_server_metrics_enable(srv, cfg->metrics_addr) != TETHER_OK) {
        tether_server_destroy(srv);
        return TETHER_ENOMEM;
    }
    *out = srv;
    return TETHER_OK;
}

const char *
tether_server_get_errmsg(const tether_server *srv)
{
    return srv != NULL ? srv->errmsg : "no server";
}

static const method_ent *
find_method(const tether_server *srv, const char *name, size_t len)
{
    /* Methods are sorted by name at start (binary search: no hashing
     * state, and a service has a handful of methods). */
    size_t lo = 0, hi = srv->nmethods;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const method_ent *m = &srv->methods[mid];
        size_t n = m->name_len < len ? m->name_len : len;
        int r = memcmp(m->name, name, n);
        if (r == 0) {
            r = m->name_len < len ? -1 : (m->name_len > len ? 1 : 0);
        }
        if (r == 0) {
            return m;
        }
        if (r < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static int
method_cmp(const void *a, const void *b)
{
    const method_ent *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static tether_err
add_method(tether_server *srv, const char *svc, const char *meth, method_ent *proto)
{
    size_t n = strlen(svc) + 1 + strlen(meth);
    if (n > TT_FRAME_MAX_NAME) {
        set_err(srv, "method name too long: %s.%s", svc, meth);
        return TETHER_EINVAL;
    }
    char *name = tt_malloc(n + 1);
    if (name == NULL) {
        return TETHER_ENOMEM;
    }
    snprintf(name, n + 1, "%s.%s", svc, meth);
    for (size_t i = 0; i < srv->nmethods; i++) {
        if (strcmp(srv->methods[i].name, name) == 0) {
            set_err(srv, "method %s already added", name);
            tt_free(name);
            return TETHER_EEXIST;
        }
    }
    method_ent *grown = tt_realloc(srv->methods, (srv->nmethods + 1) * sizeof *grown);
    if (grown == NULL) {
        tt_free(name);
        return TETHER_ENOMEM;
    }
    srv->methods = grown;
    method_ent *m = &srv->methods[srv->nmethods++];
    *m = *proto;
    m->name = name;
    m->name_len = n;
    return TETHER_OK;
}

static tether_err
add_service_name(tether_server *srv, const char *svc, size_t len)
{
    for (size_t i = 0; i < srv->nservices; i++) {
        if (strlen(srv->services[i]) == len && memcmp(srv->services[i], svc, len) == 0) {
            return TETHER_OK;
        }
    }
    char **grown = tt_realloc(srv->services, (srv->nservices + 1) * sizeof *grown);
    if (grown == NULL) {
        return TETHER_ENOMEM;
    }
    srv->services = grown;
    srv->services[srv->nservices] = tt_strndup(svc, len);
    if (srv->services[srv->nservices] == NULL) {
        return TETHER_ENOMEM;
    }
    srv->nservices++;
    return TETHER_OK;
}

tether_err
tether_server_add_service(tether_server *srv, const ProtobufCServiceDescriptor *desc,
                          const tether_method *methods, size_t n, void *arg)
{
    if (srv == NULL || desc == NULL || (methods == NULL && n > 0)) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    const char *svc = desc->short_name;
    for (size_t i = 0; i < srv->nservices; i++) {
        if (strcmp(srv->services[i], svc) == 0) {
            set_err(srv, "service %s already added", svc);
            return TETHER_EEXIST;
        }
    }
    /* Check the whole table before adding anything. */
    for (size_t i = 0; i < n; i++) {
        if (methods[i].name == NULL || methods[i].fn == NULL) {
            set_err(srv, "a method entry of %s has no name or handler", svc);
            return TETHER_EINVAL;
        }
        const ProtobufCMethodDescriptor *md =
            protobuf_c_service_descriptor_get_method_by_name(desc, methods[i].name);
        if (md == NULL) {
            set_err(srv, "service %s has no method %s", svc, methods[i].name);
            return TETHER_EINVAL;
        }
    }
    tether_err rc = add_service_name(srv, svc, strlen(svc));
    if (rc != TETHER_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        method_ent m = {0};
        m.md = protobuf_c_service_descriptor_get_method_by_name(desc, methods[i].name);
        m.fn = methods[i].fn;
        m.flags = methods[i].flags;
        m.arg = arg;
        rc = add_method(srv, svc, methods[i].name, &m);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    return TETHER_OK;
}

tether_err
tether_server_add_raw_method(tether_server *srv, const char *full_name, tether_raw_handler_fn fn,
                             unsigned flags, void *arg)
{
    if (srv == NULL || full_name == NULL || fn == NULL) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    const char *dot = strchr(full_name, '.');
    if (dot == NULL || dot == full_name || dot[1] == '\0') {
        set_err(srv, "raw method name must be Service.Method: %s", full_name);
        return TETHER_EINVAL;
    }
    char svc[TT_FRAME_MAX_NAME + 1];
    size_t sl = (size_t)(dot - full_name);
    if (sl > TT_FRAME_MAX_NAME) {
        return TETHER_EINVAL;
    }
    memcpy(svc, full_name, sl);
    svc[sl] = '\0';
    tether_err rc = add_service_name(srv, svc, sl);
    if (rc != TETHER_OK) {
        return rc;
    }
    method_ent m = {0};
    m.raw_fn = fn;
    m.flags = flags;
    m.arg = arg;
    return add_method(srv, svc, dot + 1, &m);
}

tether_err
tether_server_add_interceptor(tether_server *srv, const tether_server_interceptor *ic)
{
    if (srv == NULL || ic == NULL || (ic->before == NULL && ic->after == NULL)) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    if (srv->nics == TT_MAX_INTERCEPTORS) {
        return TETHER_ELIMIT;
    }
    srv->ics[srv->nics++] = *ic;
    return TETHER_OK;
}

const method_ent *
tt_server_lookup(const tether_server *srv, const char *name, size_t len, tether_err *code,
                 char *text, size_t cap)
{
    const method_ent *m = find_method(srv, name, len);
    if (m != NULL) {
        return m;
    }
    /* The same texts as Go's net/rpc server, which splits the name at its
     * last dot, for every codec. */
    int nl = len > TT_FRAME_MAX_NAME ? TT_FRAME_MAX_NAME : (int)len;
    const char *dot = len > 0 ? memrchr(name, '.', len) : NULL;
    if (dot == NULL) {
        snprintf(text, cap, "rpc: service/method request ill-formed: %.*s", nl, name);
        *code = TETHER_ENOMETHOD;
        return NULL;
    }
    size_t sl = (size_t)(dot - name);
    for (size_t i = 0; i < srv->nservices; i++) {
        if (strlen(srv->services[i]) == sl && memcmp(srv->services[i], name, sl) == 0) {
            snprintf(text, cap, "rpc: can't find method %.*s", nl, name);
            *code = TETHER_ENOMETHOD;
            return NULL;
        }
    }
    snprintf(text, cap, "rpc: can't find service %.*s", nl, name);
    *code = TETHER_ENOSERVICE;
    return NULL;
}

tether_err
tether_server_listen(tether_server *srv, const char *addr)
{
    if (srv == NULL || addr == NULL) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    listener l = {.fd = -1};
    tether_err rc = tt_addr_parse(addr, &l.addr);
    if (rc != TETHER_OK) {
        set_err(srv, "bad listen address '%s'", addr);
        return rc;
    }
    rc = tt_sock_listen(&l.addr, 1024, &l.fd);
    if (rc != TETHER_OK) {
        set_err(srv, "cannot listen on %s: %s", addr, tether_strerror(rc));
        return rc;
    }
    tt_sock_bound(l.fd, &l.addr);
    tt_addr_format(&l.addr, l.text, sizeof l.text);
    listener *grown = tt_realloc(srv->listeners, (size_t)(srv->nlisteners + 1) * sizeof *grown);
    if (grown == NULL) {
        close(l.fd);
        return TETHER_ENOMEM;
    }
    srv->listeners = grown;
    srv->listeners[srv->nlisteners++] = l;
    return TETHER_OK;
}

tether_err
tether_server_get_address(const tether_server *srv, int idx, char *buf, size_t len)
{
    if (srv == NULL || buf == NULL) {
        return TETHER_EINVAL;
    }
    if (idx < 0 || idx >= srv->nlisteners) {
        return TETHER_ENOENT;
    }
    size_t n = strlen(srv->listeners[idx].text);
    if (n + 1 > len) {
        return TETHER_EMSGSIZE;
    }
    memcpy(buf, srv->listeners[idx].text, n + 1);
    return TETHER_OK;
}

void
tether_server_get_stats(const tether_server *srv, tether_server_stats *out)
{
    memset(out, 0, sizeof *out);
    if (srv == NULL || srv->threads == NULL) {
        return;
    }
    for (int i = 0; i < srv->nthreads; i++) {
        iothr *t = &srv->threads[i];
        out->connections_accepted += atomic_load_explicit(&t->st_accepted, memory_order_relaxed);
        out->calls_started += atomic_load_explicit(&t->st_started, memory_order_relaxed);
        out->calls_completed += atomic_load_explicit(&t->st_completed, memory_order_relaxed);
        out->calls_failed += atomic_load_explicit(&t->st_failed, memory_order_relaxed);
        out->protocol_errors += atomic_load_explicit(&t->st_proto, memory_order_relaxed);
        out->fd_exhausted += atomic_load_explicit(&t->st_fd_exhausted, memory_order_relaxed);
        out->partial_timeouts += atomic_load_explicit(&t->st_partial_to, memory_order_relaxed);
        out->idle_closed += atomic_load_explicit(&t->st_idle_closed, memory_order_relaxed);
        out->input_paused += atomic_load_explicit(&t->st_in_paused, memory_order_relaxed);
        out->blocking_refused += atomic_load_explicit(&t->st_blk_refused, memory_order_relaxed);
    }
    out->stalls = atomic_load(&((tether_server *)srv)->st_stalls);
    long open = atomic_load(&((tether_server *)srv)->nconns);
    out->connections_open = open > 0 ? (uint64_t)open : 0;
}

void
tt_server_post_all(tether_server *srv, size_t task_off)
{
    for (int i = 0; i < srv->nthreads; i++) {
        iothr *t = &srv->threads[i];
        tt_task *task = (tt_task *)((char *)t + task_off);
        tt_loop_post(&t->loop, task);
    }
}

long
tt_server_inflight(tether_server *srv)
{
    long n = 0;
    for (int i = 0; i < srv->nthreads; i++) {
        n += atomic_load(&srv->threads[i].inflight);
    }
    return n;
}

static void *
io_main(void *arg)
{
    iothr *t = arg;
    tt_srv_tls = t;
    while (!t->stop) {
        tt_loop_poll(&t->loop, -1);
        tt_srv_flush_dirty(t);
        tt_server_metrics_flush(t);
        tt_srv_reap(t);
    }
    /* Stopping: send what is pending, then close every connection. */
    tt_srv_flush_dirty(t);
    while (t->conns != NULL) {
        tt_srv_conn_close(t->conns);
    }
    tt_srv_reap(t);
    tt_srv_tls = NULL;
    return NULL;
}

static void
thread_fini(iothr *t)
{
    /* Calls of connections that closed with calls in flight keep their
     * connection alive; with the threads gone, free them here. */
    for (conn *c = t->reap; c != NULL;) {
        conn *n = c->reap_next;
        tt_free(c);
        c = n;
    }
    /* Connections whose calls never came home (the server stopped first);
     * those calls are freed by their late answers without touching them. */
    for (conn *c = t->zombies; c != NULL;) {
        conn *n = c->next;
        tt_free(c);
        c = n;
    }
    t->zombies = NULL;
    while (t->free_calls != NULL) {
        struct tether_call *call = t->free_calls;
        t->free_calls = call->next;
        tt_buf_free(&call->ans);
        tt_buf_free(&call->trailers);
        tt_free(call);
    }
    for (int i = 0; i < t->nbufs; i++) {
        tt_free(t->bufs[i]);
    }
    t->nbufs = 0;
    for (size_t i = 0; i < sizeof t->big / sizeof t->big[0]; i++) {
        tt_free(t->big[i]);
        t->big[i] = NULL;
    }
    tt_free(t->scratch);
    tt_free(t->lios);
    tt_loop_fini(&t->loop);
}

tether_err
tether_server_start(tether_server *srv)
{
    if (srv == NULL) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW || srv->nlisteners == 0) {
        set_err(srv, "%s", srv->nlisteners == 0 ? "no listener" : "already started");
        return TETHER_ESTATE;
    }
    tether_err rc = tt_server_add_builtins(srv);
    if (rc == TETHER_OK) {
        rc = tt_server_add_health(srv);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    tt_wd_setup(srv);
    qsort(srv->methods, srv->nmethods, sizeof *srv->methods, method_cmp);
    if ((rc = tt_server_metrics_start(srv)) != TETHER_OK) {
        return rc;
    }
    /* Worker threads only for servers that have blocking methods. */
    int blocking = 0;
    for (size_t i = 0; i < srv->nmethods; i++) {
        blocking |= (srv->methods[i].flags & TETHER_METHOD_BLOCKING) != 0;
    }
    if (blocking) {
        rc = tt_pool_create(srv->cfg.worker_threads, &srv->pool);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    srv->threads = tt_calloc((size_t)srv->cfg.io_threads, sizeof *srv->threads);
    if (srv->threads == NULL) {
        return TETHER_ENOMEM;
    }
    for (int i = 0; i < srv->cfg.io_threads; i++) {
        iothr *t = &srv->threads[i];
        t->srv = srv;
        t->idx = i;
        t->mt = tt_server_metrics_thread(srv, i);
        t->accepting = 1;
        tt_timer_init(&t->accept_tmr, tt_srv_accept_resume);
        tt_timer_init(&t->big_tmr, tt_srv_big_expire);
        /* The input budget is shared out: no lock, no cross-thread wake. */
        size_t share = srv->cfg.max_input_buffered / (size_t)srv->cfg.io_threads;
        size_t least = srv->cfg.max_frame_size + TT_IOBUF;
        t->in_budget = share > least ? share : least;
        t->t_goaway.fn = tt_srv_task_goaway;
        t->t_stop_accept.fn = tt_srv_task_stop_accept;
        t->t_cancel.fn = tt_srv_task_cancel;
        t->t_drain_check.fn = tt_srv_task_drain_check;
        t->t_stop.fn = tt_srv_task_stop;
        t->t_wd_ping.fn = tt_srv_task_wd_ping;
        t->scratch = tt_malloc(TT_IOBUF);
        t->lios = tt_calloc((size_t)srv->nlisteners, sizeof *t->lios);
        if (t->scratch == NULL || t->lios == NULL) {
            tt_free(t->scratch);
            tt_free(t->lios);
            rc = TETHER_ENOMEM;
            goto fail;
        }
        rc = tt_loop_init(&t->loop);
        if (rc != TETHER_OK) {
            tt_free(t->scratch);
            tt_free(t->lios);
            goto fail;
        }
        srv->nthreads = i + 1;
        for (int j = 0; j < srv->nlisteners; j++) {
            t->lios[j].fd = srv->listeners[j].fd;
            t->lios[j].cb = tt_srv_on_listener;
            /* Every thread watches every listener; TT_EV_EXCLUSIVE wakes one
             * of them per connection, which spreads connections out. */
            rc = tt_loop_add(&t->loop, &t->lios[j], TT_EV_READ | TT_EV_EXCLUSIVE);
            if (rc != TETHER_OK) {
                goto fail;
            }
        }
    }
    atomic_store(&srv->state, SRV_RUNNING);
    for (int i = 0; i < srv->nthreads; i++) {
        int e = tt_thread_start(&srv->threads[i].tid, io_main, &srv->threads[i]);
        if (e != 0) {
            /* Threads that did start are stopped and joined. */
            for (int j = 0; j < i; j++) {
                tt_loop_post(&srv->threads[j].loop, &srv->threads[j].t_stop);
                pthread_join(srv->threads[j].tid, NULL);
            }
            atomic_store(&srv->state, SRV_NEW);
            rc = tt_err_errno(e);
            goto fail;
        }
    }
    int e = tt_thread_start(&srv->control, tt_server_control_main, srv);
    if (e != 0) {
        /* Without the control thread nobody could stop us: stop now. */
        tt_server_post_all(srv, offsetof(iothr, t_stop));
        for (int i = 0; i < srv->nthreads; i++) {
            pthread_join(srv->threads[i].tid, NULL);
        }
        atomic_store(&srv->state, SRV_NEW);
        rc = tt_err_errno(e);
        goto fail;
    }
    srv->control_started = 1;
    /* Serving now: only from here may the registry list us. */
    rc = tt_server_register_all(srv);
    if (rc != TETHER_OK) {
        if (rc != TETHER_EINVAL) {
            set_err(srv, "registration failed: %s", tether_strerror(rc));
        } /* else lifecycle.c has said why in errmsg */
        tether_server_shutdown(srv);
        tether_server_shutdown(srv);
        pthread_join(srv->control, NULL);
        srv->control_started = 0;
        return rc;
    }
    return TETHER_OK;

fail:
    for (int i = 0; i < srv->nthreads; i++) {
        thread_fini(&srv->threads[i]);
    }
    tt_free(srv->threads);
    srv->threads = NULL;
    srv->nthreads = 0;
    tt_pool_destroy(srv->pool, 100); /* the drain already waited for handlers */
    srv->pool = NULL;
    return rc;
}

void
tether_server_shutdown(tether_server *srv)
{
    if (srv == NULL) {
        return;
    }
    /* Only write(2): safe in a signal handler. */
    uint64_t one = 1;
    ssize_t w = write(srv->shutdown_fd, &one, sizeof one);
    (void)w;
}

tether_err
tether_server_wait(tether_server *srv)
{
    if (srv == NULL) {
        return TETHER_EINVAL;
    }
    if (!srv->control_started) {
        return TETHER_ESTATE;
    }
    pthread_mutex_lock(&srv->mu);
    while (atomic_load(&srv->state) != SRV_STOPPED) {
        pthread_cond_wait(&srv->cv, &srv->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    return TETHER_OK;
}

void
tt_server_stop_threads(tether_server *srv)
{
    tt_server_post_all(srv, offsetof(iothr, t_stop));
    for (int i = 0; i < srv->nthreads; i++) {
        pthread_join(srv->threads[i].tid, NULL);
    }
    /* From here no loop runs: answers arriving late must not post. */
    pthread_mutex_lock(&srv->g->mu);
    srv->g->dead = 1;
    pthread_mutex_unlock(&srv->g->mu);
    /* Posted answers that raced with the stop are still queued: finish them
     * so their calls are freed (their connections are closed). */
    for (int i = 0; i < srv->nthreads; i++) {
        iothr *t = &srv->threads[i];
        tt_srv_tls = t;
        tt_loop_poll(&t->loop, 0);
        tt_srv_reap(t);
        tt_srv_tls = NULL;
    }
    for (int i = 0; i < srv->nlisteners; i++) {
        if (srv->listeners[i].fd >= 0) {
            close(srv->listeners[i].fd);
            srv->listeners[i].fd = -1;
            if (srv->listeners[i].addr.ss.ss_family == AF_UNIX) {
                unlink(((struct sockaddr_un *)&srv->listeners[i].addr.ss)->sun_path);
            }
        }
    }
}

void
tether_server_destroy(tether_server *srv)
{
    if (srv == NULL) {
        return;
    }
    if (srv->control_started) {
        /* Two requests make the stop immediate. */
        tether_server_shutdown(srv);
        tether_server_shutdown(srv);
        pthread_join(srv->control, NULL);
        srv->control_started = 0;
    }
    tt_server_metrics_fini(srv);
    for (int i = 0; i < srv->nmclients; i++) {
        tt_free(srv->mclient_names[i]);
    }
    tt_server_registry_fini(srv);
    tt_pool_destroy(srv->pool, 100); /* the drain already waited for handlers */
    for (int i = 0; i < srv->nthreads; i++) {
        thread_fini(&srv->threads[i]);
    }
    tt_free(srv->threads);
    for (int i = 0; i < srv->nlisteners; i++) {
        if (srv->listeners[i].fd >= 0) {
            close(srv->listeners[i].fd);
        }
    }
    tt_free(srv->listeners);
    for (size_t i = 0; i < srv->nmethods; i++) {
        tt_free(srv->methods[i].name);
    }
    tt_free(srv->methods);
    for (size_t i = 0; i < srv->nservices; i++) {
        tt_free(srv->services[i]);
    }
    tt_free(srv->services);
    if (srv->shutdown_fd >= 0) {
        close(srv->shutdown_fd);
    }
    if (srv->drained_fd >= 0) {
        close(srv->drained_fd);
    }
    if (srv->wd_fd >= 0) {
        close(srv->wd_fd);
    }
    pthread_mutex_destroy(&srv->reg_mu);
    if (srv->g != NULL) {
        pthread_mutex_lock(&srv->g->mu);
        srv->g->dead = 1;
        pthread_mutex_unlock(&srv->g->mu);
        if (atomic_fetch_sub(&srv->g->refs, 1) == 1) {
            pthread_mutex_destroy(&srv->g->mu);
            tt_free(srv->g);
        }
    }
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    tt_tls_ctx_unref(srv->tls);
    tt_auth_free(srv->auth);
    tt_free(srv);
}
