/*
 * alloccount.c - count heap allocations in a process, preloaded.
 *
 *   mkfifo ctl
 *   ALLOCCOUNT_CTL=ctl ALLOCCOUNT_OUT=out LD_PRELOAD=libtether_alloccount.so prog
 *   echo mark > ctl      ... let the process work ...      echo report > ctl
 *
 * Wraps malloc, calloc, realloc and the aligned allocators, passing them
 * on to glibc's __libc_* entry points (which avoids the dlsym(RTLD_NEXT)
 * bootstrap problem: dlsym itself allocates).  Between "mark" and
 * "report" it also records the call stack of every allocation, so a
 * report can say which allocations protobuf-c's unpack made and which came
 * from anywhere else.  "report" writes ALLOCCOUNT_OUT:
 *
 *   allocs total=T malloc=M calloc=C realloc=R memalign=A frees=F
 *   stack COUNT FRAME FRAME ...     one line per distinct call stack
 *   end
 *
 * A FRAME is "path+0xOFFSET(symbol)": OFFSET is relative to the object's
 * load base, ready for addr2line; symbol is the nearest exported name or
 * "-".  bench/run.sh turns the stacks into function names.
 *
 * Why a FIFO and a thread rather than a signal: the report resolves
 * addresses with dladdr() and writes a file, neither of which is allowed
 * in a signal handler.  The reporter thread's own allocations are not
 * counted.
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

#define EXPORT __attribute__((visibility("default")))

enum { K_MALLOC, K_CALLOC, K_REALLOC, K_MEMALIGN, K_FREE, K_COUNT };
static _Atomic uint64_t counts[K_COUNT];
static uint64_t marked[K_COUNT];

/* Set while the window between "mark" and "report" is open. */
static atomic_int armed;

/*
 * quiet: this thread's allocations are neither counted nor recorded (the
 * reporter thread, and any thread inside backtrace()).  initial-exec TLS:
 * the general-dynamic model may itself allocate on a thread's first use.
 */
static __thread int quiet __attribute__((tls_model("initial-exec")));

#define DEPTH 10 /* frames kept per stack, after dropping our own two */
#define SLOTS 256
struct stack {
    uint64_t count;
    int n;
    void *pc[DEPTH];
};
static struct stack stacks[SLOTS];
static int n_stacks;
static uint64_t stacks_lost; /* allocations whose stack found no free slot */
static atomic_flag stacks_lock = ATOMIC_FLAG_INIT;

/*
 * record - note one allocation's call stack.  Only while armed, so the
 * cost of backtrace() (microseconds) lands only in the measured window,
 * where the counts matter and the timing does not.
 */
__attribute__((noinline)) static void
record(void)
{
    void *buf[DEPTH + 2];
    quiet = 1;
    int n = backtrace(buf, DEPTH + 2);
    quiet = 0;
    /* buf[0] is record(), buf[1] the wrapper (malloc...): drop both. */
    void **pc = buf + 2;
    n = n > 2 ? n - 2 : 0;
    while (atomic_flag_test_and_set_explicit(&stacks_lock, memory_order_acquire)) {
    }
    int i;
    for (i = 0; i < n_stacks; i++) {
        if (stacks[i].n == n && memcmp(stacks[i].pc, pc, (size_t)n * sizeof(void *)) == 0) {
            break;
        }
    }
    if (i == n_stacks && n_stacks < SLOTS) {
        stacks[i].n = n;
        memcpy(stacks[i].pc, pc, (size_t)n * sizeof(void *));
        stacks[i].count = 0;
        n_stacks++;
    }
    if (i < n_stacks) {
        stacks[i].count++;
    } else {
        stacks_lost++;
    }
    atomic_flag_clear_explicit(&stacks_lock, memory_order_release);
}

static inline void
count(int kind)
{
    if (quiet) {
        return;
    }
    atomic_fetch_add_explicit(&counts[kind], 1, memory_order_relaxed);
    if (kind != K_FREE && atomic_load_explicit(&armed, memory_order_relaxed)) {
        record();
    }
}

EXPORT void *
malloc(size_t size)
{
    count(K_MALLOC);
    return __libc_malloc(size);
}

EXPORT void *
calloc(size_t n, size_t size)
{
    count(K_CALLOC);
    return __libc_calloc(n, size);
}

EXPORT void *
realloc(void *p, size_t size)
{
    count(K_REALLOC);
    return __libc_realloc(p, size);
}

EXPORT void
free(void *p)
{
    if (p != NULL) {
        count(K_FREE);
    }
    __libc_free(p);
}

EXPORT void *
memalign(size_t align, size_t size)
{
    count(K_MEMALIGN);
    return __libc_memalign(align, size);
}

EXPORT void *
aligned_alloc(size_t align, size_t size)
{
    count(K_MEMALIGN);
    return __libc_memalign(align, size);
}

EXPORT int
posix_memalign(void **out, size_t align, size_t size)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0) {
        return EINVAL;
    }
    count(K_MEMALIGN);
    void *p = __libc_memalign(align, size);
    if (p == NULL) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

static void
do_mark(void)
{
    while (atomic_flag_test_and_set_explicit(&stacks_lock, memory_order_acquire)) {
    }
    n_stacks = 0;
    stacks_lost = 0;
    atomic_flag_clear_explicit(&stacks_lock, memory_order_release);
    for (int k = 0; k < K_COUNT; k++) {
        marked[k] = atomic_load(&counts[k]);
    }
    atomic_store(&armed, 1);
}

static void
put_frame(FILE *f, void *pc)
{
    Dl_info info;
    if (dladdr(pc, &info) == 0 || info.dli_fname == NULL) {
        fprintf(f, " ?+%p(-)", pc);
        return;
    }
    const char *path = info.dli_fname;
    char exe[512];
    if (path[0] != '/') {
        /* The main program is named in the link map by argv[0], possibly
         * relative or empty; addr2line needs the real path. */
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        exe[n > 0 ? n : 0] = '\0';
        path = exe;
    }
    /* A return address points after the call; step back one byte so
     * addr2line names the calling line, not the next one. */
    uintptr_t off = (uintptr_t)pc - (uintptr_t)info.dli_fbase - 1;
    fprintf(f, " %s+0x%lx(%s)", path, (unsigned long)off,
            info.dli_sname != NULL ? info.dli_sname : "-");
}

static void
do_report(const char *out_path)
{
    atomic_store(&armed, 0);
    uint64_t d[K_COUNT];
    for (int k = 0; k < K_COUNT; k++) {
        d[k] = atomic_load(&counts[k]) - marked[k];
    }
    FILE *f = fopen(out_path, "w");
    if (f == NULL) {
        return;
    }
    fprintf(f, "allocs total=%llu malloc=%llu calloc=%llu realloc=%llu memalign=%llu frees=%llu\n",
            (unsigned long long)(d[K_MALLOC] + d[K_CALLOC] + d[K_REALLOC] + d[K_MEMALIGN]),
            (unsigned long long)d[K_MALLOC], (unsigned long long)d[K_CALLOC],
            (unsigned long long)d[K_REALLOC], (unsigned long long)d[K_MEMALIGN],
            (unsigned long long)d[K_FREE]);
    while (atomic_flag_test_and_set_explicit(&stacks_lock, memory_order_acquire)) {
    }
    for (int i = 0; i < n_stacks; i++) {
        fprintf(f, "stack %llu", (unsigned long long)stacks[i].count);
        for (int j = 0; j < stacks[i].n; j++) {
            put_frame(f, stacks[i].pc[j]);
        }
        fputc('\n', f);
    }
    if (stacks_lost > 0) {
        fprintf(f, "stack %llu (stack table full)\n", (unsigned long long)stacks_lost);
    }
    atomic_flag_clear_explicit(&stacks_lock, memory_order_release);
    fprintf(f, "end\n");
    fclose(f);
}

/*
 * reporter - read commands from the control FIFO for the life of the
 * process.  Opening a FIFO for reading blocks until a writer comes, and
 * each writer's close ends one batch of commands.
 */
static void *
reporter(void *arg)
{
    (void)arg;
    quiet = 1;
    const char *ctl = getenv("ALLOCCOUNT_CTL");
    const char *out = getenv("ALLOCCOUNT_OUT");
    char line[64];
    size_t have = 0;
    for (;;) {
        int fd = open(ctl, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            return NULL;
        }
        for (;;) {
            ssize_t r = read(fd, line + have, sizeof(line) - 1 - have);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r <= 0) {
                break;
            }
            have += (size_t)r;
            line[have] = '\0';
            char *nl;
            while ((nl = strchr(line, '\n')) != NULL) {
                *nl = '\0';
                if (strcmp(line, "mark") == 0) {
                    do_mark();
                } else if (strcmp(line, "report") == 0 && out != NULL) {
                    do_report(out);
                }
                size_t used = (size_t)(nl + 1 - line);
                memmove(line, nl + 1, have - used + 1);
                have -= used;
            }
            if (have == sizeof(line) - 1) {
                have = 0; /* an overlong line: not a command */
            }
        }
        close(fd);
    }
}

__attribute__((constructor)) static void
alloccount_init(void)
{
    if (getenv("ALLOCCOUNT_CTL") == NULL) {
        return;
    }
    /* The first backtrace() loads libgcc_s, which allocates; do it now,
     * quietly, rather than inside the first recorded allocation. */
    void *pc[2];
    quiet = 1;
    (void)backtrace(pc, 2);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    (void)pthread_create(&t, &attr, reporter, NULL);
    pthread_attr_destroy(&attr);
    quiet = 0;
}
