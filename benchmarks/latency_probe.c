/*
 * Guest microbenchmark for the latency probe: memory latency as a program sees it.
 *
 *   latency_probe chase SIZE_MIB PASSES   dependent loads (a pointer chase)
 *   latency_probe store SIZE_MIB PASSES   independent stores, one per cache line
 *   latency_probe spin MILLIONS PASSES    a register-only loop: the speed of the CPU it runs on
 *
 * Both visit every 64-byte line of the buffer once per pass, in the same
 * pseudo-random order every pass.  A fixed cyclic order larger than an LRU
 * cache misses on every access, so with SIZE well above the modelled LLC each
 * measured access is a miss, as in lat_mem_rd.  One warm-up pass (page
 * faults on the bound node, TLB) precedes the timed passes.  Prints one line:
 *   mode=chase ns_per_op=123.4 ops=1048576
 * Built static on the host (the guest has no compiler).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE 64

struct line { struct line *next; char pad[LINE - sizeof(struct line *)]; };

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Sattolo's shuffle: one cycle through all n lines. */
static struct line *build_chase(struct line *buf, size_t n)
{
    uint32_t *order = malloc(n * sizeof(*order));
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
    }
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = xorshift(&seed) % i;
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        buf[order[i]].next = &buf[order[(i + 1) % n]];
    }
    free(order);
    return &buf[0]; /* one cycle: any line starts it */
}

static double chase(struct line *buf, size_t n, int passes)
{
    struct line *p = build_chase(buf, n);
    for (size_t i = 0; i < n; i++) { /* warm-up pass */
        p = p->next;
    }
    double start = now_ns();
    for (long i = 0; i < (long)n * passes; i++) {
        p = p->next;
    }
    double elapsed = now_ns() - start;
    if (p == NULL) { /* keeps the chase alive */
        puts("impossible");
    }
    return elapsed;
}

/* Full-period LCG over a power-of-two line count: a fixed pseudo-random cycle
 * that needs no index array (whose reads would pollute a write measurement). */
static void store_pass(volatile uint64_t *words, size_t n, uint64_t value)
{
    uint64_t i = 0;
    for (size_t k = 0; k < n; k++) {
        words[i * (LINE / 8)] = value;
        i = (i * 6364136223846793005ull + 1442695040888963407ull) & (n - 1);
    }
}

static double store(struct line *buf, size_t n, int passes)
{
    volatile uint64_t *words = (volatile uint64_t *)buf;
    store_pass(words, n, 1); /* warm-up pass */
    double start = now_ns();
    for (int p = 0; p < passes; p++) {
        store_pass(words, n, p);
    }
    return now_ns() - start;
}

/* Dependent xorshift steps, no memory traffic: time per step is compute speed only. */
static double spin(size_t n, int passes)
{
    uint64_t s = 0x2545f4914f6cdd1dull;
    double start = now_ns();
    for (long i = 0; i < (long)n * passes; i++) {
        xorshift(&s);
    }
    double elapsed = now_ns() - start;
    if (s == 0) { /* xorshift never reaches 0; keeps the loop alive */
        puts("impossible");
    }
    return elapsed;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "chase") && strcmp(argv[1], "store") && strcmp(argv[1], "spin"))) {
        fprintf(stderr, "usage: %s chase|store SIZE_MIB PASSES | spin MILLIONS PASSES\n", argv[0]);
        return 2;
    }
    size_t mib = strtoul(argv[2], NULL, 10);
    int passes = atoi(argv[3]);
    if (strcmp(argv[1], "spin") == 0) {
        size_t steps = mib * 1000000;
        if (steps == 0 || passes < 1) {
            fprintf(stderr, "MILLIONS and PASSES must be >= 1\n");
            return 2;
        }
        printf("mode=spin ns_per_op=%.3f ops=%zu\n", spin(steps, passes) / ((double)steps * passes), steps * passes);
        return 0;
    }
    size_t n = mib * 1024 * 1024 / LINE;
    if (n == 0 || (n & (n - 1)) || passes < 1) {
        fprintf(stderr, "SIZE_MIB must be a power of two and PASSES >= 1\n");
        return 2;
    }
    struct line *buf = aligned_alloc(4096, n * LINE);
    if (!buf) {
        perror("aligned_alloc");
        return 1;
    }
    double elapsed = strcmp(argv[1], "chase") == 0 ? chase(buf, n, passes) : store(buf, n, passes);
    printf("mode=%s ns_per_op=%.2f ops=%zu\n", argv[1], elapsed / ((double)n * passes), n * passes);
    return 0;
}
