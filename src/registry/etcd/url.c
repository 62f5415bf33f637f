/*
 * url.c - the etcd backend's URL:
 *
 *   etcd://host[:port][,host[:port]...][/prefix][?option=value&...]
 *
 * Hosts are names, IPv4 addresses or [IPv6] addresses; the port defaults
 * to 2379.  The prefix defaults to /services; trailing slashes are
 * dropped.  Options (values may be %-encoded): ttl (seconds, 2..86400),
 * timeout_ms (per request, 50..60000), user and password (etcd auth),
 * password_file (the password read from a file), cacert (a CA file;
 * implies https), cert and key (a client certificate and its key, for
 * etcd's --client-cert-auth; imply https), tls=1 (https with the system's CAs) and guardian=0 (no
 * crash guardian).  Without password or password_file, a user's password
 * comes from $TETHER_ETCD_PASSWORD if set.  Unknown options are refused,
 * so a typo is not silently ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/text.h"
#include "registry/etcd/etcd.h"
#include "registry/registry.h"

void
tt_etcd_cfg_free(struct tt_etcd_cfg *cfg)
{
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        tt_free(cfg->endpoints[i]);
    }
    tt_free(cfg->prefix);
    tt_free(cfg->user);
    if (cfg->password != NULL) {
        /* Do not leave the secret lying in freed memory. */
        memset(cfg->password, 0, strlen(cfg->password));
    }
    tt_free(cfg->password);
    tt_free(cfg->cacert);
    tt_free(cfg->cert);
    tt_free(cfg->key);
    memset(cfg, 0, sizeof *cfg);
}

/* Longest password accepted from a file or the environment. */
#define MAX_PASSWORD 1024

/*
 * The password in file path: its content up to the first newline (files
 * written with `echo` end in one).  Messages name the file, never what is
 * in it.
 */
static tether_err
read_password_file(const char *url, const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        char eb[128];
        TT_ERROR("registry: cannot open password_file '%s' of '%s': %s", path, url,
                 strerror_r(errno, eb, sizeof eb));
        return TETHER_EINVAL;
    }
    char buf[MAX_PASSWORD + 2];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            char eb[128];
            TT_ERROR("registry: cannot read password_file '%s': %s", path,
                     strerror_r(errno, eb, sizeof eb));
            close(fd);
            memset(buf, 0, sizeof buf);
            return TETHER_EINVAL;
        }
        if (n == 0 || (len += (size_t)n) == sizeof buf - 1) {
            break;
        }
    }
    close(fd);
    buf[len] = '\0';
    char *nl = memchr(buf, '\n', len);
    size_t plen = nl != NULL ? (size_t)(nl - buf) : len;
    if (plen > 0 && buf[plen - 1] == '\r') {
        plen--;
    }
    tether_err err = TETHER_OK;
    if (plen > MAX_PASSWORD) {
        TT_ERROR("registry: password_file '%s' holds more than %d bytes", path, MAX_PASSWORD);
        err = TETHER_EINVAL;
    } else if (plen == 0 || memchr(buf, '\0', plen) != NULL) {
        TT_ERROR("registry: password_file '%s' holds no password (empty, or a NUL byte)", path);
        err = TETHER_EINVAL;
    } else {
        *out = tt_strndup(buf, plen);
        err = *out != NULL ? TETHER_OK : TETHER_ENOMEM;
    }
    memset(buf, 0, sizeof buf);
    return err;
}

/* A decimal number in [lo, hi] filling all of s[0..n). */
static bool
parse_num(const char *s, size_t n, long lo, long hi, long *v)
{
    if (n == 0 || n > 9) {
        return false;
    }
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        x = x * 10 + (s[i] - '0');
    }
    if (x < lo || x > hi) {
        return false;
    }
    *v = x;
    return true;
}

/* %-decode s[0..n) into a new string; NULL on a bad escape (*bad set) or
 * ENOMEM. */
static char *
unescape(const char *s, size_t n, bool *bad)
{
    char *out = tt_malloc(n + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || tt_hexval(s[i + 1]) < 0 || tt_hexval(s[i + 2]) < 0) {
                *bad = true;
                tt_free(out);
                return NULL;
            }
            char c = (char)(tt_hexval(s[i + 1]) * 16 + tt_hexval(s[i + 2]));
            if (c == '\0') {
                *bad = true;
                tt_free(out);
                return NULL;
            }
            out[o++] = c;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* One "host[:port]" item into "http(s)://host:port". */
static tether_err
parse_endpoint(const char *s, size_t n, bool tls, char **out)
{
    const char *host = s;
    size_t hlen;
    const char *port = NULL;
    size_t plen = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL || close == s + 1) {
            return TETHER_EINVAL;
        }
        hlen = (size_t)(close - s) + 1;
        for (size_t i = 1; i + 1 < hlen; i++) {
            char c = s[i];
            if (!(tt_hexval(c) >= 0 || c == ':' || c == '.')) {
                return TETHER_EINVAL;
            }
        }
        if (hlen < n) {
            if (s[hlen] != ':') {
                return TETHER_EINVAL;
            }
            port = s + hlen + 1;
            plen = n - hlen - 1;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon != NULL ? (size_t)(colon - s) : n;
        if (colon != NULL) {
            port = colon + 1;
            plen = n - hlen - 1;
        }
        for (size_t i = 0; i < hlen; i++) {
            char c = s[i];
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
            if (!ok) {
                return TETHER_EINVAL;
            }
        }
    }
    if (hlen == 0) {
        return TETHER_EINVAL;
    }
    long pv = 2379;
    if (port != NULL && !parse_num(port, plen, 1, 65535, &pv)) {
        return TETHER_EINVAL;
    }
    char buf[320];
    int w = snprintf(buf, sizeof buf, "%s://%.*s:%ld", tls ? "https" : "http", (int)hlen, host,
                     pv);
    if (w < 0 || (size_t)w >= sizeof buf) {
        return TETHER_EINVAL;
    }
    *out = tt_strdup(buf);
    return *out != NULL ? TETHER_OK : TETHER_ENOMEM;
}

/* Apply one "name=value" option. */
static tether_err
parse_option(const char *url, const char *s, size_t n, struct tt_etcd_cfg *cfg, bool *tls,
             char **password_file)
{
    const char *eq = memchr(s, '=', n);
    if (eq == NULL) {
        TT_ERROR("registry: option '%.*s' in '%s' has no value", (int)n, s, url);
        return TETHER_EINVAL;
    }
    size_t klen = (size_t)(eq - s);
    const char *v = eq + 1;
    size_t vlen = n - klen - 1;
    long num;
    char **str = NULL;
    if (klen == 3 && memcmp(s, "ttl", 3) == 0) {
        /* etcd raises anything under 2 s to its minimum anyway. */
        if (!parse_num(v, vlen, 2, 86400, &num)) {
            TT_ERROR("registry: ttl in '%s' must be 2..86400 seconds", url);
            return TETHER_EINVAL;
        }
        cfg->ttl_s = (uint32_t)num;
        return TETHER_OK;
    }
    if (klen == 10 && memcmp(s, "timeout_ms", 10) == 0) {
        if (!parse_num(v, vlen, 50, 60000, &num)) {
            TT_ERROR("registry: timeout_ms in '%s' must be 50..60000", url);
            return TETHER_EINVAL;
        }
        cfg->timeout_ms = (uint32_t)num;
        return TETHER_OK;
    }
    if (klen == 3 && memcmp(s, "tls", 3) == 0) {
        /* Only values we know: "tls=true" used to mean plaintext. */
        static const char *const yes[] = {"1", "true", "yes", "on"};
        static const char *const no[] = {"0", "false", "no", "off"};
        for (size_t i = 0; i < 4; i++) {
            if (vlen == strlen(yes[i]) && memcmp(v, yes[i], vlen) == 0) {
                *tls = true;
                return TETHER_OK;
            }
            if (vlen == strlen(no[i]) && memcmp(v, no[i], vlen) == 0) {
                *tls = false;
                return TETHER_OK;
            }
        }
        TT_ERROR("registry: tls in '%s' must be 1/0, true/false, yes/no or on/off", url);
        return TETHER_EINVAL;
    }
    if (klen == 8 && memcmp(s, "guardian", 8) == 0) {
        if (vlen == 1 && (v[0] == '0' || v[0] == '1')) {
            cfg->guardian = v[0] == '1';
            return TETHER_OK;
        }
        TT_ERROR("registry: guardian in '%s' must be 1 or 0", url);
        return TETHER_EINVAL;
    }
    if (klen == 4 && memcmp(s, "user", 4) == 0) {
        str = &cfg->user;
    } else if (klen == 8 && memcmp(s, "password", 8) == 0) {
        str = &cfg->password;
    } else if (klen == 13 && memcmp(s, "password_file", 13) == 0) {
        str = password_file;
    } else if (klen == 6 && memcmp(s, "cacert", 6) == 0) {
        str = &cfg->cacert;
        *tls = true;
    } else if (klen == 4 && memcmp(s, "cert", 4) == 0) {
        str = &cfg->cert;
        *tls = true;
    } else if (klen == 3 && memcmp(s, "key", 3) == 0) {
        str = &cfg->key;
        *tls = true;
    } else {
        TT_ERROR("registry: unknown option '%.*s' in '%s' (known: ttl, timeout_ms, user, "
                 "password, password_file, cacert, cert, key, tls, guardian)",
                 (int)klen, s, url);
        return TETHER_EINVAL;
    }
    bool bad = false;
    char *val = unescape(v, vlen, &bad);
    if (val == NULL) {
        if (bad) {
            TT_ERROR("registry: bad %%-escape in option '%.*s' of '%s'", (int)klen, s, url);
            return TETHER_EINVAL;
        }
        return TETHER_ENOMEM;
    }
    tt_free(*str);
    *str = val;
    return TETHER_OK;
}

static tether_err parse_url(const char *url, const char *rest, struct tt_etcd_cfg *cfg);

tether_err
tt_etcd_parse_url(const char *url, const char *rest, struct tt_etcd_cfg *cfg)
{
    /* Every message below names the URL: never with its password. */
    char shown[512];
    tether_registry_url_redact(url, shown, sizeof shown);
    return parse_url(shown, rest, cfg);
}

static tether_err
parse_url(const char *url, const char *rest, struct tt_etcd_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ttl_s = TT_ETCD_DEFAULT_TTL_S;
    cfg->timeout_ms = TT_ETCD_DEFAULT_TIMEOUT_MS;
    cfg->guardian = true;
    tether_err err = TETHER_EINVAL;
    bool tls = false;
    char *password_file = NULL;
    if (strncmp(rest, "//", 2) != 0) {
        TT_ERROR("registry: '%s' must look like etcd://host:port[,host:port...][/prefix]", url);
        return TETHER_EINVAL;
    }
    rest += 2;
    const char *query = strchr(rest, '?');
    size_t before_query = query != NULL ? (size_t)(query - rest) : strlen(rest);
    const char *slash = memchr(rest, '/', before_query);
    size_t hosts_len = slash != NULL ? (size_t)(slash - rest) : before_query;

    /* Options first: tls decides the endpoints' scheme. */
    if (query != NULL) {
        const char *p = query + 1;
        while (*p != '\0') {
            const char *amp = strchr(p, '&');
            size_t n = amp != NULL ? (size_t)(amp - p) : strlen(p);
            if (n > 0) {
                err = parse_option(url, p, n, cfg, &tls, &password_file);
                if (err != TETHER_OK) {
                    goto fail;
                }
            }
            p += n + (amp != NULL ? 1 : 0);
        }
    }
    if (cfg->password != NULL && password_file != NULL) {
        TT_ERROR("registry: '%s' has both password and password_file", url);
        err = TETHER_EINVAL;
        goto fail;
    }
    if ((cfg->password != NULL || password_file != NULL) && cfg->user == NULL) {
        TT_ERROR("registry: '%s' has a password but no user", url);
        err = TETHER_EINVAL;
        goto fail;
    }
    if (password_file != NULL) {
        err = read_password_file(url, password_file, &cfg->password);
        if (err != TETHER_OK) {
            goto fail;
        }
    } else if (cfg->user != NULL && cfg->password == NULL) {
        /* Out of the URL, so out of command lines and unit files. */
        const char *env = getenv("TETHER_ETCD_PASSWORD");
        if (env != NULL && env[0] != '\0') {
            if (strlen(env) > MAX_PASSWORD) {
                TT_ERROR("registry: TETHER_ETCD_PASSWORD holds more than %d bytes", MAX_PASSWORD);
                err = TETHER_EINVAL;
                goto fail;
            }
            cfg->password = tt_strdup(env);
            if (cfg->password == NULL) {
                err = TETHER_ENOMEM;
                goto fail;
            }
        }
    }

    const char *p = rest;
    const char *end = rest + hosts_len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);
        if (n > 0) {
            if (cfg->nendpoints == TT_ETCD_MAX_ENDPOINTS) {
                TT_ERROR("registry: more than %d endpoints in '%s'", TT_ETCD_MAX_ENDPOINTS, url);
                err = TETHER_EINVAL;
                goto fail;
            }
            err = parse_endpoint(p, n, tls, &cfg->endpoints[cfg->nendpoints]);
            if (err != TETHER_OK) {
                if (err == TETHER_EINVAL && memchr(p, '@', n) != NULL) {
                    /* user:password@host: the endpoint itself may hold a secret */
                    TT_ERROR("registry: bad etcd endpoint in '%s' (credentials go in "
                             "?user=U&password=P, not before the host)",
                             url);
                } else if (err == TETHER_EINVAL) {
                    TT_ERROR("registry: bad etcd endpoint '%.*s' in '%s'", (int)n, p, url);
                }
                goto fail;
            }
            cfg->nendpoints++;
        }
        p += n + (comma != NULL ? 1 : 0);
    }
    if (cfg->nendpoints == 0) {
        TT_ERROR("registry: no etcd endpoint in '%s'", url);
        err = TETHER_EINVAL;
        goto fail;
    }
    if ((cfg->cert == NULL) != (cfg->key == NULL)) {
        TT_ERROR("registry: cert= and key= go together (a client certificate and its key) in "
                 "'%s'",
                 url);
        err = TETHER_EINVAL;
        goto fail;
    }

    if (slash != NULL) {
        size_t n = before_query - hosts_len;
        while (n > 1 && slash[n - 1] == '/') {
            n--;
        }
        if (n == 1) {
            n = 0; /* "/" alone: keys are "/<service>/<addr>" */
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)slash[i];
            if (c <= ' ' || c == 0x7f) {
                TT_ERROR("registry: bad character in the prefix of '%s'", url);
                err = TETHER_EINVAL;
                goto fail;
            }
        }
        cfg->prefix = tt_strndup(slash, n);
    } else {
        cfg->prefix = tt_strdup(TT_ETCD_DEFAULT_PREFIX);
    }
    if (cfg->prefix == NULL) {
        err = TETHER_ENOMEM;
        goto fail;
    }
    tt_free(password_file);
    return TETHER_OK;

fail:
    tt_free(password_file);
    tt_etcd_cfg_free(cfg);
    return err;
}
