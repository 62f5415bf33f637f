/*
 * conns.c - hold many idle client connections open, for the memory rows.
 *
 *   tether-bench-conns --addr 127.0.0.1:PORT --count N [--preface 1|0]
 *
 * Opens N TCP connections to addr; with --preface 1 (the default) each
 * sends tether's 8-byte connection preface, so the server has taken the
 * connection as a tether client and not just accepted a socket.  Then it
 * prints "RESULT opened=N" and sleeps until killed.  bench/run.sh measures
 * the server's RSS before and after.  Use --preface 0 for servers that
 * speak another protocol (Go's net/rpc).
 *
 * Every socket gets SO_LINGER {on, 0}: when the process is killed its
 * connections are reset instead of lingering in TIME_WAIT, so repeated
 * runs do not use up the loopback's ephemeral ports.
 */
#include <signal.h>

#include "bench_util.h"

int
main(int argc, char **argv)
{
    const char *addr = NULL;
    long count = 10000;
    int preface = 1;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--addr") == 0) {
            addr = argv[i + 1];
        } else if (strcmp(argv[i], "--count") == 0) {
            count = strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--preface") == 0) {
            preface = strcmp(argv[i + 1], "0") != 0;
        } else {
            addr = NULL;
            break;
        }
    }
    struct sockaddr_in sa;
    if (addr == NULL || count < 1 || bench_parse_addr(addr, &sa) != 0) {
        fprintf(stderr, "usage: tether-bench-conns --addr HOST:PORT --count N [--preface 1|0]\n");
        return 2;
    }
    rlim_t lim = bench_raise_nofile();
    if (lim < (rlim_t)count + 16) {
        fprintf(stderr, "tether-bench-conns: RLIMIT_NOFILE %llu is too low for %ld connections\n",
                (unsigned long long)lim, count);
        return 1;
    }
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);

    struct linger lg = {1, 0};
    for (long i = 0; i < count; i++) {
        int fd = bench_connect(&sa);
        if (fd < 0) {
            perror("tether-bench-conns: connect");
            fprintf(stderr, "tether-bench-conns: %ld connections were open\n", i);
            return 1;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        if (preface && bench_write_all(fd, BENCH_PREFACE, BENCH_PREFACE_LEN) != 0) {
            fprintf(stderr, "tether-bench-conns: preface on connection %ld failed\n", i);
            return 1;
        }
    }
    printf("RESULT opened=%ld\n", count);
    fflush(stdout);
    for (;;) {
        pause();
    }
}
