/*
 * calculator-client - call the calculator, as the Go client does.
 *
 *   calculator-client [--addr ADDR | --registry URL --service NAME] add|sub|mul|div A B
 *   calculator-client --registry URL --service NAME --loop [--interval-ms MS]
 *                     [--duration-s S]
 *
 * Prints the result and exits 0, or prints the server's error to stderr
 * and exits 1.  With --registry the client finds the service's instances in
 * the registry and balances calls across them.  --loop calls Add
 * continuously (every MS milliseconds, default 2) and prints once a second
 * how many calls were made and how many failed, until SIGINT/SIGTERM or
 * the duration ends; it exits 0 only if no call failed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tether/client.h>

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

static void
usage(void)
{
    fprintf(stderr,
            "usage: calculator-client [--addr ADDR | --registry URL --service NAME] "
            "add|sub|mul|div A B\n"
            "       calculator-client --registry URL --service NAME --loop [--interval-ms MS] "
            "[--duration-s S]\n");
    exit(2);
}

static int
parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static volatile sig_atomic_t stop_flag;

static void
on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --loop: continuous Add calls, a progress line a second. */
static int
run_loop(tether_client *c, long interval_ms, double duration_s)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    long calls = 0, failed = 0;
    double start = now_s(), next_report = start + 1.0;
    for (int64_t k = 0; !stop_flag; k++) {
        if (duration_s > 0 && now_s() - start >= duration_s) {
            break;
        }
        Args args = ARGS__INIT;
        args.a = k;
        args.b = 1;
        ProtobufCMessage *reply = NULL;
        char *errtext = NULL;
        tether_err rc = tether_client_call(c, "Calculator.Add", &args.base,
                                           &google__protobuf__int64_value__descriptor, &reply,
                                           TETHER_CALL_TIMEOUT(2000), &errtext);
        calls++;
        if (rc != TETHER_OK || ((Google__Protobuf__Int64Value *)reply)->value != k + 1) {
            failed++;
            printf("client: call %ld failed: %s\n", calls,
                   errtext != NULL ? errtext : tether_strerror(rc));
        }
        tether_free(errtext);
        tether_msg_free(reply);
        double t = now_s();
        if (t >= next_report) {
            printf("client: t=%5.1fs calls=%ld failed=%ld\n", t - start, calls, failed);
            fflush(stdout);
            next_report += 1.0;
        }
        if (interval_ms > 0) {
            struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    printf("client: done calls=%ld failed=%ld\n", calls, failed);
    fflush(stdout);
    return failed == 0 ? 0 : 1;
}

/* A client for every instance of service in the registry at url. */
static tether_err
open_by_name(const char *url, const char *service, tether_client **c)
{
    tether_registry *reg = NULL;
    tether_err rc = tether_registry_open(url, &reg);
    if (rc == TETHER_OK) {
        rc = tether_client_create_service(reg, service, NULL, c);
        tether_registry_close(reg); /* the client holds its own reference */
    }
    return rc;
}

int
main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:8080";
    const char *registry = NULL;
    const char *service = "calculator";
    int loop = 0;
    long interval_ms = 2;
    double duration_s = 0;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--addr") == 0 && i + 1 < argc) {
            addr = argv[++i];
        } else if (strcmp(argv[i], "--registry") == 0 && i + 1 < argc) {
            registry = argv[++i];
        } else if (strcmp(argv[i], "--service") == 0 && i + 1 < argc) {
            service = argv[++i];
        } else if (strcmp(argv[i], "--loop") == 0) {
            loop = 1;
        } else if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc) {
            interval_ms = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--duration-s") == 0 && i + 1 < argc) {
            duration_s = strtod(argv[++i], NULL);
        } else {
            usage();
        }
    }
    /* The library says why something failed in its log: show it. */
    tether_log_set_handler(tether_log_stderr, TETHER_LOG_WARN, NULL);
    if (loop) {
        if (registry == NULL || argc != i) {
            usage();
        }
        tether_client *c;
        tether_err rc = open_by_name(registry, service, &c);
        if (rc != TETHER_OK) {
            char shown[512];
            tether_registry_url_redact(registry, shown, sizeof shown);
            fprintf(stderr, "calculator-client: registry %s: %s\n", shown, tether_strerror(rc));
            return 1;
        }
        int code = run_loop(c, interval_ms, duration_s);
        tether_client_destroy(c);
        return code;
    }
    if (argc - i != 3) {
        usage();
    }
    const char *op = argv[i];
    const char *method;
    if (strcmp(op, "add") == 0) {
        method = "Calculator.Add";
    } else if (strcmp(op, "sub") == 0) {
        method = "Calculator.Sub";
    } else if (strcmp(op, "mul") == 0) {
        method = "Calculator.Mul";
    } else if (strcmp(op, "div") == 0) {
        method = "Calculator.Div";
    } else {
        usage();
        return 2;
    }
    Args args = ARGS__INIT;
    if (parse_i64(argv[i + 1], &args.a) != 0 || parse_i64(argv[i + 2], &args.b) != 0) {
        fprintf(stderr, "calculator-client: A and B must be integers\n");
        return 2;
    }
    tether_client *c;
    tether_err rc = registry != NULL ? open_by_name(registry, service, &c)
                                     : tether_client_create(addr, NULL, &c);
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-client: cannot reach %s: %s\n",
                registry != NULL ? service : addr, tether_strerror(rc));
        return 1;
    }
    ProtobufCMessage *reply = NULL;
    char *errtext = NULL;
    rc = tether_client_call(c, method, &args.base, &google__protobuf__int64_value__descriptor,
                            &reply, TETHER_CALL_TIMEOUT(5000), &errtext);
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-client: %s: %s\n", method,
                errtext != NULL ? errtext : tether_strerror(rc));
        tether_free(errtext);
        tether_client_destroy(c);
        return 1;
    }
    printf("%lld\n", (long long)((Google__Protobuf__Int64Value *)reply)->value);
    tether_msg_free(reply);
    tether_client_destroy(c);
    return 0;
}
