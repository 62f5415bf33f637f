/*
 * http.c - HTTP/1.1 to etcd's JSON gateway with libcurl.
 *
 * Each user (the callers' requests, the keep-alive thread, each watch)
 * owns one tt_etcd_http: a multi handle with one easy handle, so the TCP
 * connection stays open between requests (the multi handle's connection
 * cache) and every wait is a curl_multi_poll() that another thread can
 * cut short with curl_multi_wakeup().  That is what lets a watch or the
 * keep-alive thread stop at once, even in the middle of a request, without
 * signals and without polling a flag on a timer.
 *
 * Every unary request has a timeout (protocol-notes: a bad token can make
 * etcd sit on a request for good); streams have none, but their sockets
 * use TCP keep-alive so a vanished peer is noticed.
 *
 * Fail-over: a request starts on the endpoint that answered last (shared
 * by every connection of the registry object) and moves to the next one
 * on a transport error or a 502/503/504 answer, as long as its budget
 * lasts.  A member that answers anything else has answered.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "registry/etcd/etcd.h"

/* How long one curl_multi_poll() may sleep inside a transfer; only an
 * upper bound, since every event and every wake-up ends it earlier. */
#define POLL_SLICE_MS 1000

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

/* curl_global_init() is not thread-safe in every libcurl build: run it
 * once, whichever thread gets here first. */
static void
global_init(void)
{
    if (tt_curl_load() != TETHER_OK) {
        global_rc = CURLE_FAILED_INIT;
        return;
    }
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* libcurl's write callback: collect the body (or the unread part of a
 * stream), NUL-terminated, up to TT_ETCD_MAX_BODY. */
static size_t
on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct tt_etcd_http *h = arg;
    size_t n = size * nmemb;
    if (n > TT_ETCD_MAX_BODY || h->body.len + n > TT_ETCD_MAX_BODY) {
        h->overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (tt_buf_reserve(&h->body, n + 1) != TETHER_OK) {
        return 0;
    }
    memcpy(h->body.data + h->body.len, p, n);
    h->body.len += n;
    h->body.data[h->body.len] = '\0';
    return n;
}

tether_err
tt_etcd_http_init(struct tt_etcd_http *h, struct tt_etcd_registry *er, const atomic_bool *stop)
{
    memset(h, 0, sizeof *h);
    h->er = er;
    h->stop = stop;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        if (tt_curl_load() != TETHER_OK) {
            return TETHER_ENOTSUP; /* logged by the loader */
        }
        TT_ERROR("registry: libcurl cannot be initialised: %s", curl_easy_strerror(global_rc));
        return TETHER_EREGISTRY;
    }
    h->multi = curl_multi_init();
    h->easy = curl_easy_init();
    if (h->multi == NULL || h->easy == NULL) {
        tt_etcd_http_fini(h);
        return TETHER_ENOMEM;
    }
    CURL *e = h->easy;
    /* Threads: libcurl must never raise signals (SIGALRM for DNS, SIGPIPE)
     * in a process whose signals belong to the application. */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* The gateway speaks HTTP/1.1 only (h2c goes to the gRPC server). */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
    /* An environment proxy has no business between us and etcd. */
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* Streams have no timeout: TCP keep-alive notices a peer that
     * vanished without closing. */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 2L);
    if (er->cfg.cacert != NULL) {
        curl_easy_setopt(e, CURLOPT_CAINFO, er->cfg.cacert);
    }
    if (er->cfg.cert != NULL) {
        /* A client certificate, for etcd's --client-cert-auth. */
        curl_easy_setopt(e, CURLOPT_SSLCERT, er->cfg.cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, er->cfg.key);
    }
    /* One connection per user is all we need; the cache keeps it. */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 2L);
    return TETHER_OK;
}

void
tt_etcd_http_fini(struct tt_etcd_http *h)
{
    if (h->easy != NULL) {
        curl_easy_cleanup(h->easy);
    }
    if (h->multi != NULL) {
        curl_multi_cleanup(h->multi);
    }
    tt_buf_free(&h->body);
    memset(h, 0, sizeof *h);
}

void
tt_etcd_http_wake(struct tt_etcd_http *h)
{
    if (h->multi != NULL) {
        curl_multi_wakeup(h->multi);
    }
}

static bool
stopped(const struct tt_etcd_http *h)
{
    return h->stop != NULL && atomic_load(h->stop);
}

void
tt_etcd_http_sleep(struct tt_etcd_http *h, uint32_t ms)
{
    if (ms == 0 || stopped(h)) {
        return;
    }
    /* One poll: it ends early on a wake-up, and every caller loops and
     * looks at its clock and flags again. */
    curl_multi_poll(h->multi, NULL, 0, (int)ms, NULL);
}

void
tt_etcd_reply_clear(struct tt_etcd_reply *rep)
{
    if (rep->json != NULL) {
        json_decref(rep->json);
    }
    rep->json = NULL;
    rep->status = 0;
}

/* Hand every complete line in h->body to fn (all of it when `all`: the last
 * line of a stream may have no newline), keeping the rest.  false once fn
 * asked to stop. */
static bool
deliver_lines(struct tt_etcd_http *h, tt_etcd_line_fn fn, void *arg, bool all)
{
    char *buf = (char *)h->body.data;
    size_t start = 0;
    bool go = true;
    while (go && start < h->body.len) {
        char *nl = memchr(buf + start, '\n', h->body.len - start);
        size_t end;
        if (nl != NULL) {
            end = (size_t)(nl - buf);
        } else if (all) {
            end = h->body.len;
        } else {
            break;
        }
        size_t n = end - start;
        /* Blank lines (keep-alive newlines, "\r\n" leftovers) carry
         * nothing. */
        if (n > 0 && !(n == 1 && buf[start] == '\r')) {
            buf[end] = '\0';
            go = fn(arg, buf + start, n);
        }
        start = end + (nl != NULL ? 1 : 0);
    }
    if (start > 0) {
        memmove(buf, buf + start, h->body.len - start);
        h->body.len -= start;
    }
    if (buf != NULL) {
        buf[h->body.len] = '\0';
    }
    return go;
}

/* What a libcurl result means to the callers. */
static tether_err
map_curl(const struct tt_etcd_http *h, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return TETHER_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return TETHER_ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return TETHER_ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return TETHER_ENOMEM;
    case CURLE_WRITE_ERROR:
        return h->overflow ? TETHER_EMSGSIZE : TETHER_ENOMEM;
    default:
        return TETHER_ECONNRESET;
    }
}

/* Whether a libcurl result is a TLS failure (certificate, CA file,
 * handshake). */
static bool
tls_failure(CURLcode rc)
{
    return rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
           rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CACERT_BADFILE ||
           rc == CURLE_SSL_ISSUER_ERROR;
}

/*
 * One try on one endpoint.  With fn, the answer is a stream: once the
 * status is 200 its lines go to fn as they arrive (*streamed set); other
 * answers stay in h->body.  timeout_ms 0 means no overall timeout.
 */
static tether_err
perform(struct tt_etcd_http *h, size_t ep, const char *path, const char *body,
        uint32_t timeout_ms, bool with_token, tt_etcd_line_fn fn, void *arg, long *status,
        bool *streamed)
{
    struct tt_etcd_registry *er = h->er;
    char url[512];
    int w = snprintf(url, sizeof url, "%s%s", er->cfg.endpoints[ep], path);
    if (w < 0 || (size_t)w >= sizeof url) {
        return TETHER_EINVAL;
    }
    /* An empty "Expect:" saves the 100-continue round trip curl adds to
     * bodies over 1 KiB.  curl_slist_append() returns NULL and leaves the
     * list alone when it cannot allocate. */
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (hdrs == NULL) {
        return TETHER_ENOMEM;
    }
    struct curl_slist *t = curl_slist_append(hdrs, "Expect:");
    if (t == NULL) {
        curl_slist_free_all(hdrs);
        return TETHER_ENOMEM;
    }
    if (with_token) {
        char auth[600];
        bool have = false;
        pthread_mutex_lock(&er->tok_mu);
        if (er->token != NULL) {
            have = snprintf(auth, sizeof auth, "Authorization: %s", er->token) <
                   (int)sizeof auth;
        }
        pthread_mutex_unlock(&er->tok_mu);
        if (have) {
            t = curl_slist_append(hdrs, auth);
            memset(auth, 0, sizeof auth);
            if (t == NULL) {
                curl_slist_free_all(hdrs);
                return TETHER_ENOMEM;
            }
        }
    }
    CURL *e = h->easy;
    uint32_t connect_ms = er->cfg.timeout_ms;
    if (timeout_ms != 0 && timeout_ms < connect_ms) {
        connect_ms = timeout_ms;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    h->body.len = 0;
    h->overflow = false;
    h->errbuf[0] = '\0';
    if (h->body.data != NULL) {
        h->body.data[0] = '\0';
    }
    *status = 0;

    tether_err err = TETHER_OK;
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_slist_free_all(hdrs);
        return TETHER_EREGISTRY;
    }
    CURLcode result = CURLE_OK;
    bool done = false;
    for (;;) {
        int running = 0;
        if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
            err = TETHER_EREGISTRY;
            break;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
            if (m->msg == CURLMSG_DONE && m->easy_handle == e) {
                result = m->data.result;
                done = true;
            }
        }
        if (fn != NULL && *status != 200) {
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
        }
        if (fn != NULL && *status == 200) {
            *streamed = true;
            if (!deliver_lines(h, fn, arg, done)) {
                break; /* the reader is done: drop the connection */
            }
        }
        if (done) {
            break;
        }
        if (stopped(h)) {
            err = TETHER_ECANCELED;
            break;
        }
        curl_multi_poll(h->multi, NULL, 0, POLL_SLICE_MS, NULL);
    }
    /* Removing an unfinished transfer closes its connection, which is how
     * a stream is ended (over HTTP/1.1 there is no other way). */
    curl_multi_remove_handle(h->multi, e);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    if (err != TETHER_OK || !done) {
        return err;
    }
    err = map_curl(h, result);
    if (err == TETHER_OK || (fn != NULL && *streamed)) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
        h->tls_logged = false;
    } else if (tls_failure(result)) {
        /* A certificate or handshake problem is a setup error, not etcd
         * being down: say what it is (once per connection until a request
         * gets through), or all the log shows is "connection reset". */
        if (!h->tls_logged) {
            TT_ERROR("registry: etcd %s: TLS failed: %s", url,
                     h->errbuf[0] != '\0' ? h->errbuf : curl_easy_strerror(result));
            h->tls_logged = true;
        }
    } else {
        TT_DEBUG("registry: etcd %s: %s", url, h->errbuf[0] != '\0' ? h->errbuf
                                                                    : curl_easy_strerror(result));
    }
    return err;
}

/* Log in with the URL's user and password on endpoint ep. */
static tether_err
authenticate(struct tt_etcd_http *h, size_t ep, uint32_t timeout_ms)
{
    struct tt_etcd_registry *er = h->er;
    json_t *req = json_pack("{s:s,s:s}", "name", er->cfg.user, "password",
                            er->cfg.password != NULL ? er->cfg.password : "");
    char *body = req != NULL ? tt_etcd_dump(req) : NULL;
    json_decref(req);
    if (body == NULL) {
        return TETHER_ENOMEM;
    }
    long status = 0;
    bool streamed = false;
    tether_err err = perform(h, ep, "/v3/auth/authenticate", body, timeout_ms, false, NULL, NULL,
                             &status, &streamed);
    memset(body, 0, strlen(body));
    tt_free(body);
    if (err != TETHER_OK) {
        return err;
    }
    struct tt_etcd_reply rep = {status, json_loadb(h->body.data != NULL ? (const char *)h->body.data : "", h->body.len, 0, NULL)};
    const json_t *tok = json_object_get(rep.json, "token");
    if (status != 200 || !json_is_string(tok)) {
        TT_ERROR("registry: etcd authentication as '%s' failed: %s", er->cfg.user,
                 tt_etcd_err_text(&rep));
        tt_etcd_reply_clear(&rep);
        return TETHER_EREGISTRY;
    }
    char *copy = tt_strdup(json_string_value(tok));
    tt_etcd_reply_clear(&rep);
    if (copy == NULL) {
        return TETHER_ENOMEM;
    }
    pthread_mutex_lock(&er->tok_mu);
    tt_free(er->token);
    er->token = copy;
    pthread_mutex_unlock(&er->tok_mu);
    return TETHER_OK;
}

static bool
have_token(struct tt_etcd_registry *er)
{
    pthread_mutex_lock(&er->tok_mu);
    bool have = er->token != NULL;
    pthread_mutex_unlock(&er->tok_mu);
    return have;
}

void
tt_etcd_drop_token(struct tt_etcd_registry *er)
{
    pthread_mutex_lock(&er->tok_mu);
    tt_free(er->token);
    er->token = NULL;
    pthread_mutex_unlock(&er->tok_mu);
}

/* The fail-over loop shared by unary calls (fn NULL) and streams. */
static tether_err
request(struct tt_etcd_http *h, const char *path, const char *body, uint32_t budget_ms,
        tt_etcd_line_fn fn, void *arg, long *status)
{
    struct tt_etcd_registry *er = h->er;
    size_t n = er->cfg.nendpoints;
    size_t start = atomic_load(&er->cur_ep) % n;
    uint64_t deadline = tt_now_ms() + budget_ms;
    bool reauthed = false;
    tether_err last = TETHER_ECONNREFUSED;
    for (size_t i = 0; i < n; i++) {
        size_t ep = (start + i) % n;
        uint32_t t = 0;
        if (fn == NULL) {
            uint64_t now = tt_now_ms();
            if (now >= deadline) {
                last = TETHER_ETIMEDOUT;
                break;
            }
            t = (uint32_t)(deadline - now);
            if (t > er->cfg.timeout_ms) {
                t = er->cfg.timeout_ms;
            }
        }
        if (er->cfg.user != NULL && !have_token(er)) {
            tether_err aerr = authenticate(h, ep, t != 0 ? t : er->cfg.timeout_ms);
            if (aerr == TETHER_EREGISTRY || aerr == TETHER_ENOMEM || aerr == TETHER_ECANCELED) {
                return aerr;
            }
            if (aerr != TETHER_OK) {
                last = aerr;
                continue;
            }
        }
        bool streamed = false;
        tether_err err = perform(h, ep, path, body, t, er->cfg.user != NULL, fn, arg, status,
                                 &streamed);
        if (streamed) {
            /* A stream that got going has been answered by this member,
             * however it ended: the caller decides how to resume. */
            atomic_store(&er->cur_ep, (unsigned)ep);
            return err;
        }
        if (err == TETHER_ECANCELED || err == TETHER_ENOMEM || err == TETHER_EMSGSIZE ||
            err == TETHER_EINVAL) {
            return err;
        }
        if (err != TETHER_OK) {
            last = err;
            continue;
        }
        if (*status == 401 && er->cfg.user != NULL && !reauthed) {
            /* The token expired (or etcd restarted): log in again and
             * retry once on the same member. */
            tt_etcd_drop_token(er);
            reauthed = true;
            i--;
            continue;
        }
        if ((*status == 502 || *status == 503 || *status == 504) && i + 1 < n) {
            last = TETHER_ECONNRESET;
            continue;
        }
        atomic_store(&er->cur_ep, (unsigned)ep);
        return TETHER_OK;
    }
    return last;
}

tether_err
tt_etcd_post(struct tt_etcd_http *h, const char *path, const char *body, uint32_t budget_ms,
             struct tt_etcd_reply *rep)
{
    rep->status = 0;
    rep->json = NULL;
    tether_err err = request(h, path, body, budget_ms, NULL, NULL, &rep->status);
    if (err != TETHER_OK) {
        return err;
    }
    /* Not JSON (a route error is plain text, garbage is garbage): json
     * stays NULL and the caller says what it expected. */
    rep->json = json_loadb(h->body.data != NULL ? (const char *)h->body.data : "", h->body.len, JSON_REJECT_DUPLICATES, NULL);
    return TETHER_OK;
}

tether_err
tt_etcd_stream(struct tt_etcd_http *h, const char *path, const char *body, tt_etcd_line_fn fn,
               void *arg, long *status)
{
    *status = 0;
    return request(h, path, body, 0, fn, arg, status);
}
