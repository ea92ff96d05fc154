/*
 * A CPU-bound batch job: THREADS threads step a register-only generator and
 * count the steps, forever.  Its throughput is what a batch job cares about:
 *
 *   cpu_batch THREADS [MIB READY]   then: SIGUSR1 starts the timed window,
 *                          SIGUSR2 (or SIGTERM) ends it and prints
 *   batch_threads=4 batch_ops=123456789 batch_seconds=12.3 batch_ops_per_s=1.0e7
 *
 * The threads run from the start, so the machine is busy (and a scheduler or
 * an advisor sees a busy process) before the window opens.  With MIB, the job
 * first touches a buffer of that many MiB (its data, placed where first touch
 * puts it), creates the file READY, and each thread then reads one line of its
 * share of the buffer per chunk of steps, in order: a batch job scanning its
 * data, which keeps the pages in use.  Built static on the host; the guest has
 * no compiler.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define CHUNK 4096

#define LINE 64

/* One cache line per thread; `data`/`lines`: its share of the buffer (none without MIB). */
struct slot { volatile uint64_t steps; const volatile unsigned char *data; size_t lines; char pad[40]; };
static struct slot slots[MAX_THREADS];

static void *work(void *arg)
{
    struct slot *mine = arg;
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
    size_t at = 0;
    for (;;) {
        for (int i = 0; i < CHUNK; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
        }
        if (mine->lines) {
            s += mine->data[at * LINE]; /* a read the loop depends on: never optimised away */
            at = at + 1 == mine->lines ? 0 : at + 1;
        }
        mine->steps += CHUNK + (s == 0); /* s is never 0: keeps the loop from being optimised away */
    }
    return NULL;
}

/* The job's data: MIB MiB touched here, so first touch places it before any thread runs. */
static unsigned char *touch(size_t mib)
{
    unsigned char *buf = malloc(mib << 20);
    if (buf) {
        memset(buf, 0x5a, mib << 20);
    }
    return buf;
}

static uint64_t total(int n)
{
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        sum += slots[i].steps;
    }
    return sum;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int n = argc == 2 || argc == 4 ? atoi(argv[1]) : 0;
    long mib = argc == 4 ? atol(argv[2]) : 0;
    if (n < 1 || n > MAX_THREADS || mib < 0 || mib > (1L << 20)) {
        fprintf(stderr, "usage: %s THREADS (1..%d) [MIB READY]\n", argv[0], MAX_THREADS);
        return 2;
    }
    unsigned char *buf = mib ? touch((size_t)mib) : NULL;
    if (mib && !buf) {
        perror("malloc");
        return 1;
    }
    size_t share = ((size_t)mib << 20) / LINE / n; /* lines per thread */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the workers inherit the mask: main takes every signal */
    for (int i = 0; i < n; i++) {
        slots[i].data = buf ? buf + (size_t)i * share * LINE : NULL;
        slots[i].lines = share;
        pthread_t t;
        if (pthread_create(&t, NULL, work, &slots[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    if (mib) {
        FILE *ready = fopen(argv[3], "w");
        if (!ready || fclose(ready) != 0) {
            perror(argv[3]);
            return 1;
        }
    }
    uint64_t mark = total(n);
    double started = now_s();
    for (;;) {
        int sig;
        sigwait(&set, &sig);
        if (sig == SIGUSR1) {
            mark = total(n);
            started = now_s();
            continue;
        }
        uint64_t ops = total(n) - mark;
        double seconds = now_s() - started;
        printf("batch_threads=%d batch_ops=%llu batch_seconds=%.3f batch_ops_per_s=%.1f\n", n,
               (unsigned long long)ops, seconds, seconds > 0 ? ops / seconds : 0.0);
        fflush(stdout);
        return 0;
    }
}
