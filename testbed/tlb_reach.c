/*
 * tlb-reach: bound how long QEMU's software TLB keeps a translation, as a hardware TLB's size does.
 *
 *   tlb-reach PERIOD_US
 *
 * One thread per online CPU, pinned to it, wakes every PERIOD_US.  Waking a task of another
 * address space loads CR3, and TCG flushes that vCPU's whole TLB on a CR3 load; the next
 * access to each page walks the page tables again and sets the PTE's accessed bit, as a
 * hardware TLB miss does.  SCHED_FIFO (if allowed) so that the wake-up is not delayed behind
 * a busy workload; each wake-up costs microseconds of CPU.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static struct timespec period;

static void *wake_on(void *cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((long)cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        perror("sched_setaffinity");
    struct sched_param fifo = { .sched_priority = 1 };
    sched_setscheduler(0, SCHED_FIFO, &fifo);  /* best effort: CFS wakes a short sleeper promptly too */
    for (;;)
        nanosleep(&period, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    long us = argc == 2 ? strtol(argv[1], NULL, 10) : 0;
    if (us <= 0) {
        fprintf(stderr, "usage: %s PERIOD_US (> 0)\n", argv[0]);
        return 2;
    }
    period.tv_sec = us / 1000000;
    period.tv_nsec = (us % 1000000) * 1000;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (long cpu = 1; cpu < cpus; cpu++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, wake_on, (void *)cpu) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    wake_on((void *)0);
}
