/*
 * regbench.c - registrations per second from one process against one
 * etcd, through the public API only: one registry object, N instances
 * registered one after another (one shared lease, one put each), then
 * deregistered one after another.  Prints two lines:
 *
 *   register N MS     (N registrations took MS milliseconds)
 *   deregister N MS
 *
 * Usage: regbench URL N
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <tether/registry.h>
#include <tether/tether.h>

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: regbench URL N\n");
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    if (n < 1 || n > 20000) {
        fprintf(stderr, "regbench: N must be 1..20000\n");
        return 2;
    }
    tether_registry *r = NULL;
    tether_err err = tether_registry_open(argv[1], &r);
    if (err != TETHER_OK) {
        fprintf(stderr, "regbench: open %s: %s\n", argv[1], tether_strerror(err));
        return 1;
    }
    tether_registration **regs = calloc((size_t)n, sizeof *regs);
    char addr[64];
    double t0 = now_ms();
    for (long i = 0; i < n; i++) {
        snprintf(addr, sizeof addr, "127.0.0.1:%ld", 10000 + i);
        tether_instance inst = {.service = "regbench", .address = addr};
        err = tether_registry_register(r, &inst, &regs[i]);
        if (err != TETHER_OK) {
            fprintf(stderr, "regbench: register %s: %s\n", addr, tether_strerror(err));
            return 1;
        }
    }
    double t1 = now_ms();
    for (long i = n - 1; i >= 0; i--) {
        tether_registration_deregister(regs[i]);
    }
    double t2 = now_ms();
    printf("register %ld %.1f\nderegister %ld %.1f\n", n, t1 - t0, n, t2 - t1);
    free(regs);
    tether_registry_close(r);
    return 0;
}
