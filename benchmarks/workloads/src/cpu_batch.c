/*
 * A CPU-bound batch job: THREADS threads step a register-only generator and
 * count the steps, forever.  Its throughput is what a batch job cares about:
 *
 *   cpu_batch THREADS      then: SIGUSR1 starts the timed window,
 *                          SIGUSR2 (or SIGTERM) ends it and prints
 *   batch_threads=4 batch_ops=123456789 batch_seconds=12.3 batch_ops_per_s=1.0e7
 *
 * The threads run from the start, so the machine is busy (and a scheduler or
 * an advisor sees a busy process) before the window opens.  Built static on
 * the host; the guest has no compiler.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_THREADS 64
#define CHUNK 4096

struct slot { volatile uint64_t steps; char pad[56]; }; /* one cache line per thread */
static struct slot slots[MAX_THREADS];

static void *work(void *arg)
{
    struct slot *mine = arg;
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
    for (;;) {
        for (int i = 0; i < CHUNK; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
        }
        mine->steps += CHUNK + (s == 0); /* s is never 0: keeps the loop from being optimised away */
    }
    return NULL;
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
    int n = argc == 2 ? atoi(argv[1]) : 0;
    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: %s THREADS (1..%d)\n", argv[0], MAX_THREADS);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the workers inherit the mask: main takes every signal */
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, work, &slots[i]) != 0) {
            perror("pthread_create");
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
