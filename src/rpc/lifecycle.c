/*
 * lifecycle.c - a server's registration in a registry, the opt-in run
 * helper with its signal handling, and systemd readiness notification.
 *
 * The order is the point: an instance is registered only after its I/O
 * threads serve, and deregistered before anything else in a stop (drain.c
 * calls tt_server_deregister_all() as step 1), so the registry never lists
 * an instance that will not answer.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>

#include "core/alloc.h"
#include "core/log.h"
#include "registry/registry.h"
#include "rpc/server_int.h"

static void deregister_all_locked(tether_server *srv);

static void
on_stop_hook(tether_server *srv, void *arg)
{
    (void)arg;
    if (srv->notify_systemd) {
        tt_sd_notify("STOPPING=1");
    }
    tt_server_deregister_all(srv);
}

tether_err
tether_server_set_registry(tether_server *srv, tether_registry *r,
                           const tether_instance *tmpl)
{
    if (srv == NULL || r == NULL || tmpl == NULL || tmpl->service == NULL ||
        tmpl->service[0] == '\0' || (tmpl->meta == NULL && tmpl->meta_count > 0) ||
        srv->registry != NULL) {
        return TETHER_EINVAL;
    }
    const char *service = tmpl->service;
    const tether_meta *meta = tmpl->meta;
    size_t nmeta = tmpl->meta_count;
    uint32_t weight = tmpl->weight;
    int state = atomic_load(&srv->state);
    if (state == SRV_DRAINING || state == SRV_STOPPED) {
        return TETHER_ESTATE;
    }
    srv->reg_service = tt_strdup(service);
    srv->reg_meta = tt_calloc(nmeta + 1, sizeof *srv->reg_meta);
    if (srv->reg_service == NULL || srv->reg_meta == NULL) {
        tt_server_registry_fini(srv);
        return TETHER_ENOMEM;
    }
    for (size_t i = 0; i < nmeta; i++) {
        srv->reg_meta[i].key = tt_strdup(meta[i].key != NULL ? meta[i].key : "");
        srv->reg_meta[i].value = tt_strdup(meta[i].value != NULL ? meta[i].value : "");
        srv->reg_nmeta = i + 1;
        if (srv->reg_meta[i].key == NULL || srv->reg_meta[i].value == NULL) {
            tt_server_registry_fini(srv);
            return TETHER_ENOMEM;
        }
    }
    srv->reg_weight = weight == 0 ? 1 : weight;
    if (tmpl->address != NULL && tmpl->address[0] != '\0') {
        srv->reg_advertise = tt_strdup(tmpl->address);
        if (srv->reg_advertise == NULL) {
            tt_server_registry_fini(srv);
            return TETHER_ENOMEM;
        }
    }
    srv->registry = r;
    srv->on_stop = on_stop_hook;
    if (state == SRV_RUNNING) {
        return tt_server_register_all(srv);
    }
    return TETHER_OK;
}

/* The host's first non-loopback IPv4 address that is up, for a wildcard
 * listener registered where other hosts read. */
static int
primary_address(char *buf, size_t cap)
{
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) != 0) {
        return 0;
    }
    int found = 0;
    for (struct ifaddrs *i = ifs; i != NULL && !found; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
            !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) {
            continue;
        }
        const struct in_addr *a = &((const struct sockaddr_in *)i->ifa_addr)->sin_addr;
        if ((ntohl(a->s_addr) >> 24) == 127) {
            continue;
        }
        found = inet_ntop(AF_INET, a, buf, (socklen_t)cap) != NULL;
    }
    freeifaddrs(ifs);
    return found;
}

/* The address listener l is registered with (see tether_server_set_registry):
 * TETHER_OK with it in buf, or TETHER_EINVAL with the reason in srv->errmsg. */
static tether_err
advertised(tether_server *srv, const listener *l, char *buf, size_t cap)
{
    if (srv->reg_advertise != NULL) {
        snprintf(buf, cap, "%s", srv->reg_advertise);
        return TETHER_OK;
    }
    const struct sockaddr_storage *ss = &l->addr.ss;
    int any4 = ss->ss_family == AF_INET &&
               ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    int any6 = ss->ss_family == AF_INET6 &&
               IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    if (!any4 && !any6) {
        snprintf(buf, cap, "%s", l->text);
        return TETHER_OK;
    }
    unsigned port = ntohs(any4 ? ((const struct sockaddr_in *)ss)->sin_port
                               : ((const struct sockaddr_in6 *)ss)->sin6_port);
    if (strcmp(srv->registry->ops->scheme, "local") == 0) {
        /* A local: registry's readers are on this host. */
        snprintf(buf, cap, any4 ? "127.0.0.1:%u" : "[::1]:%u", port);
        return TETHER_OK;
    }
    char host[INET_ADDRSTRLEN];
    if (primary_address(host, sizeof host)) {
        snprintf(buf, cap, "%s:%u", host, port);
        return TETHER_OK;
    }
    snprintf(srv->errmsg, sizeof srv->errmsg,
             "cannot register %.128s: it listens on %.64s (every address) and this host has no "
             "address other hosts can reach; set the address to advertise "
             "(tether_instance.address, or --advertise HOST:PORT)",
             srv->reg_service, l->text);
    tt_log(TETHER_LOG_ERROR, "%s", srv->errmsg);
    return TETHER_EINVAL;
}

tether_err
tt_server_register_all(tether_server *srv)
{
    pthread_mutex_lock(&srv->reg_mu);
    if (srv->registry == NULL || srv->regs != NULL) {
        pthread_mutex_unlock(&srv->reg_mu);
        return TETHER_OK;
    }
    srv->regs = tt_calloc((size_t)srv->nlisteners, sizeof *srv->regs);
    if (srv->regs == NULL) {
        pthread_mutex_unlock(&srv->reg_mu);
        return TETHER_ENOMEM;
    }
    /* An advertised address stands for the whole server: one instance. */
    int n = srv->reg_advertise != NULL ? 1 : srv->nlisteners;
    for (int i = 0; i < n; i++) {
        char addr[300];
        tether_err arc = advertised(srv, &srv->listeners[i], addr, sizeof addr);
        if (arc != TETHER_OK) {
            deregister_all_locked(srv);
            pthread_mutex_unlock(&srv->reg_mu);
            return arc;
        }
        tether_instance inst;
        memset(&inst, 0, sizeof inst);
        inst.service = srv->reg_service;
        inst.address = addr;
        inst.meta = srv->reg_meta;
        inst.meta_count = srv->reg_nmeta;
        inst.weight = srv->reg_weight;
        inst.state = TETHER_INSTANCE_SERVING;
        tether_err rc = tether_registry_register(srv->registry, &inst, &srv->regs[i]);
        if (rc != TETHER_OK) {
            tt_log(TETHER_LOG_ERROR, "cannot register %s at %s: %s", srv->reg_service, addr,
                   tether_strerror(rc));
            deregister_all_locked(srv);
            pthread_mutex_unlock(&srv->reg_mu);
            return rc;
        }
        if (!srv->listed) {
            /* The watchdog (or the application) holds the server out. */
            tt_registration_set_state(srv->regs[i], TT_INSTANCE_NOT_SERVING);
        }
        tt_log(TETHER_LOG_INFO, "registered %s at %s", srv->reg_service, addr);
    }
    pthread_mutex_unlock(&srv->reg_mu);
    return TETHER_OK;
}

int
tt_server_set_listed(tether_server *srv, int listed)
{
    pthread_mutex_lock(&srv->reg_mu);
    int failed = 0;
    if (srv->regs != NULL && srv->listed != listed) {
        /* Each registration stays alive (local: its locked entry, etcd:
         * its lease) and is only hidden from lists and watches. */
        for (int i = 0; i < srv->nlisteners; i++) {
            if (srv->regs[i] != NULL &&
                tt_registration_set_state(srv->regs[i], listed ? TETHER_INSTANCE_SERVING
                                                               : TT_INSTANCE_NOT_SERVING) !=
                    TETHER_OK) {
                failed = 1;
            }
        }
    }
    if (!failed) {
        srv->listed = listed;
    }
    pthread_mutex_unlock(&srv->reg_mu);
    return failed ? -1 : 0;
}

void
tt_server_deregister_all(tether_server *srv)
{
    pthread_mutex_lock(&srv->reg_mu);
    deregister_all_locked(srv);
    pthread_mutex_unlock(&srv->reg_mu);
}

static void
deregister_all_locked(tether_server *srv)
{
    if (srv->regs == NULL) {
        return;
    }
    /* Gone from the registry before any connection hears "going away".
     * The server itself is already draining; a separate "draining" write
     * first would only delay the removal watchers act on (one more file
     * rename locally, one more round trip to etcd). */
    for (int i = 0; i < srv->nlisteners; i++) {
        if (srv->regs[i] != NULL) {
            tether_err rc = tether_registration_deregister(srv->regs[i]);
            if (rc != TETHER_OK) {
                tt_log(TETHER_LOG_WARN, "deregister %s: %s", srv->reg_service, tether_strerror(rc));
            }
            srv->regs[i] = NULL;
        }
    }
    tt_free(srv->regs);
    srv->regs = NULL;
}

void
tt_server_registry_fini(tether_server *srv)
{
    tt_server_deregister_all(srv);
    if (srv->reg_meta != NULL) {
        for (size_t i = 0; i < srv->reg_nmeta; i++) {
            tt_free((char *)srv->reg_meta[i].key);
            tt_free((char *)srv->reg_meta[i].value);
        }
    }
    tt_free(srv->reg_meta);
    tt_free(srv->reg_service);
    tt_free(srv->reg_advertise);
    srv->reg_advertise = NULL;
    srv->reg_meta = NULL;
    srv->reg_service = NULL;
    srv->reg_nmeta = 0;
    srv->registry = NULL;
}

void
tt_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || (path[0] != '/' && path[0] != '@')) {
        return;
    }
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof un.sun_path) {
        return;
    }
    memcpy(un.sun_path, path, n);
    if (un.sun_path[0] == '@') {
        un.sun_path[0] = '\0'; /* abstract namespace */
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return;
    }
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&un, len);
    if (w < 0) {
        tt_log(TETHER_LOG_WARN, "systemd notify failed (errno %d)", errno);
    }
    close(fd);
}

/* The server tether_server_run() is running, for its signal handler. */
static tether_server *_Atomic run_srv;

static void
on_signal(int sig)
{
    (void)sig;
    tether_server *srv = atomic_load(&run_srv);
    if (srv != NULL) {
        tether_server_shutdown(srv); /* only write(2) */
    }
}

tether_err
tether_server_run(tether_server *srv)
{
    if (srv == NULL) {
        return TETHER_EINVAL;
    }
    tether_server *expected = NULL;
    if (!atomic_compare_exchange_strong(&run_srv, &expected, srv)) {
        return TETHER_ESTATE;
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* A program may block the two signals before starting the server (so
     * its threads never take them, and none is lost before this point);
     * with the handlers in place, let them in on this thread. */
    sigset_t set, old_mask;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, &old_mask);
    srv->notify_systemd = getenv("NOTIFY_SOCKET") != NULL;
    if (srv->on_stop == NULL) {
        srv->on_stop = on_stop_hook;
    }
    tether_err rc = TETHER_OK;
    if (atomic_load(&srv->state) == SRV_NEW) {
        rc = tether_server_start(srv);
    }
    if (rc == TETHER_OK) {
        if (srv->notify_systemd) {
            tt_sd_notify("READY=1");
        }
        rc = tether_server_wait(srv);
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    atomic_store(&run_srv, NULL);
    return rc;
}
