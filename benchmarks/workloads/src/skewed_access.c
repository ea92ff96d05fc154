/*
 * A skewed random-access kernel (GUPS-like): placement matters when the hot
 * set is on the slow node.
 *
 *   skewed_access size_mib=1024 hot_mib=128 hot_share=0.9 reads=0.95 ops=2000000 seed=1
 *                 [granule_kib=4] [hot_at=scattered|tail] [law=zipf|step] [log_mib=0] [wait=PATH] [hotmap=PATH]
 *                 [seconds=S [tick_ms=250] [census_ticks=0]] [huge_pages=1]
 *
 * The buffer is cut into granules (pages by default) ranked by popularity
 * under a Zipf-like law: rank r is picked with weight r^-theta, and theta is
 * solved so that the top hot_mib of granules get hot_share of the operations
 * (hot_share = hot_mib/size_mib means uniform).  Sampling uses an alias table
 * over log-spaced rank buckets (uniform inside a bucket), so an operation
 * costs a few integer instructions and touches no memory but the small table
 * and its target line: the measured traffic is the workload's own.
 *
 * law=step drops the law for two flat levels: every hot granule is picked
 * alike and they share hot_share, the rest share what is left.  Zipf has no
 * edge (the granules just past the hot set are nearly as hot as its last
 * ones), so with it every page is touched often; a step with hot_share near 1
 * gives a hot set and memory that is truly cold, the regime published
 * results on kernel tiering are measured in (README, "Fair baselines").
 *
 * hot_at=scattered spreads the ranks over the buffer with a seeded affine
 * permutation; hot_at=tail puts the hottest granules at the end of the
 * buffer, which first touch (in address order) fills last, i.e. onto the slow
 * node when the fast one is full.
 *
 * log_mib=N > 0 splits reads from writes: the buffer is a table read by the
 * law above, and every write goes to a uniformly random line of a log of N
 * MiB placed after it (hot_share counts the table's operations; touched last, so first touch spills the log, not the
 * table, onto the slow node).  Both are hot; only the log is written: what a
 * write-aware placement can tell apart and a heat-only one cannot.
 *
 * huge_pages=0 asks for base pages only (MADV_NOHUGEPAGE): a first touch on
 * a full fast node can still place single transparent huge pages there after
 * base pages have moved on to the slow node (README, "Evaluation"), so a run
 * that must start with its tail on the slow node turns them off.
 *
 * Phases: allocate and touch every page in address order (first touch
 * decides placement); write the hot granules' addresses to `hotmap` if asked
 * (rank order, one hex address per line); if `wait` is given, print
 * `ready pid=N` and wait until that file exists (the harness places or
 * advises meanwhile); then the timed loop of `ops` operations, or, with
 * seconds=S, as many as fit in S seconds.  A read loads one 8-byte word of a
 * random line of the chosen granule, a write stores one.  A timed loop prints
 * its progress every tick_ms (default 250) as `tick t=SECONDS ops=TOTAL`, so
 * the harness sees throughput over time (a reactive policy converging).
 * With census_ticks=N > 0 it also asks the kernel, every N ticks and at the
 * end, which node holds a sample of the hot set's pages and of the rest's
 * (move_pages without moving; up to CENSUS_PAGES of each) and prints
 * `census t=SECONDS hot=NODE:PAGES,... cold=NODE:PAGES,... [log=NODE:PAGES,...] ms=COST`
 * (log= with a log, sampled alike): whether a policy
 * put the hot set on the fast node, seen from the program's own ranks.
 * Prints one last line of key=value pairs, e.g.
 *   workload=skewed_access ops=2000000 seconds=1.23 ops_per_s=1626016.3 ...
 * (user_s and sys_s: the timed loop's CPU seconds in user mode and in the kernel).
 * The timed loop is bracketed by the testbed latency plugin's phase marks
 * (two no-ops it recognises), so its counters hold the loop alone.
 * Built static on the host (the guest has no compiler).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINE 64
#define MIB (1024UL * 1024UL)
#define BUCKET_GROWTH 1.02
#define CLOCK_EVERY 1024 /* operations between two looks at the clock in a timed loop */
#define CENSUS_PAGES 4096 /* pages sampled per class (hot, cold, log) by a census */
#define CENSUS_RETRIES 3  /* asks about a page caught mid-migration */
#define MAX_NODES 64

struct options {
    unsigned long size_mib, hot_mib, granule_kib, ops, seed, tick_ms, log_mib, census_ticks, huge_pages;
    double hot_share, reads, seconds;
    int tail, step;
    const char *wait, *hotmap;
};

struct bucket { uint64_t start, count; double mass; };

struct sampler {
    size_t n;                /* buckets */
    struct bucket *buckets;
    uint64_t *threshold;     /* alias method: keep bucket i if draw < threshold[i] */
    uint32_t *alias;
};

/* The latency plugin's phase marks (testbed/latency/plugin.c): no-ops on any x86-64 CPU. */
#define PHASE_BEGINS() __asm__ volatile("nopl 0x304d4c4c(%%rax)" ::: "memory")
#define PHASE_ENDS() __asm__ volatile("nopl 0x314d4c4c(%%rax)" ::: "memory")

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "skewed_access: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* This process's CPU seconds so far, in user mode and in the kernel: the kernel's share is its work on
 * the workload's behalf (NUMA hint faults, the promotions they make, page faults), which a reactive
 * policy adds and a placement made before the timed loop does not. */
static void cpu_s(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6;
    *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static uint64_t next(uint64_t *s) /* xorshift64* */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dULL;
}

static void parse(int argc, char **argv, struct options *o)
{
    *o = (struct options){1024, 128, 4, 1000000, 1, 250, 0, 0, 1, 0.9, 1.0, 0, 0, 0, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            die("argument %s is not key=value", argv[i]);
        }
        *eq = '\0';
        const char *k = argv[i], *v = eq + 1;
        char *end;
        errno = 0;
        if (!strcmp(k, "wait")) { o->wait = v; continue; }
        if (!strcmp(k, "hotmap")) { o->hotmap = v; continue; }
        if (!strcmp(k, "hot_at")) {
            if (strcmp(v, "tail") && strcmp(v, "scattered")) {
                die("hot_at=%s: want tail or scattered", v);
            }
            o->tail = !strcmp(v, "tail");
            continue;
        }
        if (!strcmp(k, "law")) {
            if (strcmp(v, "zipf") && strcmp(v, "step")) {
                die("law=%s: want zipf or step", v);
            }
            o->step = !strcmp(v, "step");
            continue;
        }
        if (!strcmp(k, "seconds")) {
            o->seconds = strtod(v, &end);
            if (*end || errno || !(o->seconds > 0)) {
                die("seconds=%s wants a positive number", v);
            }
            continue;
        }
        if (!strcmp(k, "hot_share") || !strcmp(k, "reads")) {
            double d = strtod(v, &end);
            if (*end || errno || d < 0 || d > 1) {
                die("%s wants a fraction in 0..1", k);
            }
            *(!strcmp(k, "reads") ? &o->reads : &o->hot_share) = d;
            continue;
        }
        unsigned long *field = !strcmp(k, "size_mib") ? &o->size_mib : !strcmp(k, "hot_mib") ? &o->hot_mib
                             : !strcmp(k, "granule_kib") ? &o->granule_kib : !strcmp(k, "ops") ? &o->ops
                             : !strcmp(k, "seed") ? &o->seed : !strcmp(k, "tick_ms") ? &o->tick_ms
                             : !strcmp(k, "log_mib") ? &o->log_mib
                             : !strcmp(k, "census_ticks") ? &o->census_ticks
                             : !strcmp(k, "huge_pages") ? &o->huge_pages : NULL;
        if (!field) {
            die("unknown option %s", k);
        }
        *field = strtoul(v, &end, 10);
        if (*end || errno || !*v || *v == '-') {
            die("%s wants a whole number", k);
        }
    }
    if (o->tick_ms == 0) {
        die("%s", "tick_ms must be at least 1");
    }
    if (o->size_mib == 0 || o->hot_mib == 0 || o->hot_mib > o->size_mib) {
        die("%s", "need 0 < hot_mib <= size_mib");
    }
    if (o->granule_kib == 0 || (o->size_mib * 1024) % o->granule_kib || (o->hot_mib * 1024) % o->granule_kib) {
        die("%s", "granule_kib must divide hot_mib and size_mib");
    }
    if (o->hot_share < (double)o->hot_mib / o->size_mib || (o->hot_share >= 1 && o->hot_mib < o->size_mib)) {
        die("%s", "hot_share must lie in [hot_mib/size_mib, 1)");
    }
}

/* Zipf mass of ranks [a, b) (1-based), by the integral of x^-theta over [a-1/2, b-1/2). */
static double mass(double a, double b, double theta)
{
    a -= 0.5;
    b -= 0.5;
    if (fabs(theta - 1) < 1e-9) {
        return log(b / a);
    }
    return (pow(b, 1 - theta) - pow(a, 1 - theta)) / (1 - theta);
}

/* Buckets with log-spaced rank bounds, one bound exactly at the hot set's edge. */
static size_t make_buckets(uint64_t n, uint64_t hot, struct bucket **out)
{
    size_t cap = 64, len = 0;
    struct bucket *b = malloc(cap * sizeof(*b));
    uint64_t start = 0;
    double edge = 1;
    while (start < n) {
        while ((uint64_t)edge <= start) {
            edge *= BUCKET_GROWTH;
        }
        uint64_t end = (uint64_t)edge;
        if (start < hot && end > hot) {
            end = hot;
        }
        if (end > n) {
            end = n;
        }
        if (len == cap) {
            b = realloc(b, (cap *= 2) * sizeof(*b));
        }
        b[len++] = (struct bucket){start, end - start, 0};
        start = end;
    }
    *out = b;
    return len;
}

static double hot_mass(const struct bucket *b, size_t n, uint64_t hot, double theta)
{
    double all = 0, in = 0;
    for (size_t i = 0; i < n; i++) {
        double m = mass(b[i].start + 1, b[i].start + b[i].count + 1, theta);
        all += m;
        if (b[i].start < hot) {
            in += m;
        }
    }
    return in / all;
}

/* theta in [0, 20] giving the hot set `share` of the mass; the share grows with theta. */
static double solve_theta(const struct bucket *b, size_t n, uint64_t hot, double share)
{
    double lo = 0, hi = 20;
    if (hot_mass(b, n, hot, lo) >= share) {
        return 0;
    }
    for (int i = 0; i < 60; i++) {
        double mid = (lo + hi) / 2;
        *(hot_mass(b, n, hot, mid) < share ? &lo : &hi) = mid;
    }
    return (lo + hi) / 2;
}

/* Each bucket's mass under Zipf(theta), or under two flat levels when `step` (hot ranks share `share`). */
static void set_masses(struct sampler *s, double theta, int step, uint64_t hot, uint64_t n, double share)
{
    for (size_t i = 0; i < s->n; i++) {
        struct bucket *b = &s->buckets[i];
        if (!step) {
            b->mass = mass(b->start + 1, b->start + b->count + 1, theta);
        } else { /* buckets never straddle the hot edge (make_buckets) */
            b->mass = b->count * (b->start < hot ? share / hot : (1 - share) / (n - hot));
        }
    }
}

/* Vose's alias method over the buckets' masses (set_masses). */
static void make_alias(struct sampler *s)
{
    size_t n = s->n, small = 0, large = 0;
    double total = 0, *p = malloc(n * sizeof(*p));
    uint32_t *lo = malloc(n * sizeof(*lo)), *hi = malloc(n * sizeof(*hi));
    for (size_t i = 0; i < n; i++) {
        total += s->buckets[i].mass;
    }
    for (size_t i = 0; i < n; i++) {
        s->buckets[i].mass /= total;
        p[i] = s->buckets[i].mass * n;
        if (p[i] < 1) lo[small++] = i; else hi[large++] = i;
    }
    s->threshold = malloc(n * sizeof(*s->threshold));
    s->alias = malloc(n * sizeof(*s->alias));
    while (small && large) {
        uint32_t l = lo[--small], g = hi[--large];
        s->threshold[l] = (uint64_t)(p[l] * 18446744073709551615.0);
        s->alias[l] = g;
        p[g] -= 1 - p[l];
        if (p[g] < 1) lo[small++] = g; else hi[large++] = g;
    }
    while (large) { uint32_t g = hi[--large]; s->threshold[g] = UINT64_MAX; s->alias[g] = g; }
    while (small) { uint32_t l = lo[--small]; s->threshold[l] = UINT64_MAX; s->alias[l] = l; }
    free(p);
    free(lo);
    free(hi);
}

static uint64_t sample_rank(const struct sampler *s, uint64_t *rng)
{
    uint64_t i = next(rng) % s->n;
    if (next(rng) > s->threshold[i]) {
        i = s->alias[i];
    }
    return s->buckets[i].start + next(rng) % s->buckets[i].count;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) { uint64_t t = a % b; a = b; b = t; }
    return a;
}

/* rank -> granule: a bijection, seeded (scattered) or hottest last (tail). */
struct layout { uint64_t n, mul, add; int tail; };

static uint64_t granule_of(const struct layout *l, uint64_t rank)
{
    return l->tail ? l->n - 1 - rank : (rank * l->mul + l->add) % l->n;
}

static struct layout make_layout(uint64_t n, int tail, uint64_t *rng)
{
    struct layout l = {n, 1, 0, tail};
    if (!tail && n > 1) {
        do { l.mul = next(rng) % n; } while (l.mul == 0 || gcd(l.mul, n) != 1);
        l.add = next(rng) % n;
    }
    return l;
}

/* Evenly spaced ranks of [from, to), at most CENSUS_PAGES: the pages a census asks about. */
static size_t census_pages(void **pages, char *buf, const struct layout *l, uint64_t from, uint64_t to, size_t granule)
{
    uint64_t stride = (to - from + CENSUS_PAGES - 1) / CENSUS_PAGES;
    size_t len = 0;
    for (uint64_t r = from; r < to; r += stride) { /* stride >= 1 whenever from < to */
        pages[len++] = buf + granule_of(l, r) * granule;
    }
    return len;
}

/*
 * Count the pages' nodes into count[] (move_pages with no target only locates
 * them).  A page the kernel is migrating at that moment has no node (its PTE
 * is a migration entry: -ENOENT), so those are asked about again, up to
 * CENSUS_RETRIES times 1 ms apart; one still moving after that is left out.
 */
static int census_locate(void *const *pages, size_t len, unsigned long *count)
{
    void *again[CENSUS_PAGES];
    int status[CENSUS_PAGES];
    for (int round = 0; len && round <= CENSUS_RETRIES; round++) {
        if (round) {
            usleep(1000);
        }
        if (syscall(SYS_move_pages, 0, len, pages, NULL, status, 0) != 0) {
            return -1;
        }
        size_t moving = 0;
        for (size_t i = 0; i < len; i++) {
            if (status[i] >= 0 && status[i] < MAX_NODES) {
                count[status[i]]++;
            } else {
                again[moving++] = pages[i];
            }
        }
        pages = again, len = moving;
    }
    return 0;
}

/* Print NAME=NODE:PAGES,... for the nodes of the pages sampled. */
static void census_class(const char *name, void *const *pages, size_t len)
{
    unsigned long count[MAX_NODES] = {0};
    if (census_locate(pages, len, count) != 0) {
        printf(" %s=error:%d", name, errno);
        return;
    }
    printf(" %s=", name);
    for (int node = 0, first = 1; node < MAX_NODES; node++) {
        if (count[node]) {
            printf("%s%d:%lu", first ? "" : ",", node, count[node]);
            first = 0;
        }
    }
}

/* Evenly spaced pages of [start, start + bytes), at most CENSUS_PAGES. */
static size_t census_span(void **pages, char *start, size_t bytes)
{
    size_t count = bytes / 4096, stride = (count + CENSUS_PAGES - 1) / CENSUS_PAGES, len = 0;
    for (size_t p = 0; p < count; p += stride) {
        pages[len++] = start + p * 4096;
    }
    return len;
}

struct census {
    void *hot[CENSUS_PAGES], *cold[CENSUS_PAGES], *log[CENSUS_PAGES];
    size_t hot_len, cold_len, log_len;
};

static void census(double t, const struct census *c)
{
    double start = now_s();
    printf("census t=%.3f", t);
    census_class("hot", c->hot, c->hot_len);
    census_class("cold", c->cold, c->cold_len);
    if (c->log_len) {
        census_class("log", c->log, c->log_len);
    }
    printf(" ms=%.1f\n", (now_s() - start) * 1000); /* what it cost the timed loop */
    fflush(stdout);
}

static void write_hotmap(const char *path, char *buf, const struct layout *l, uint64_t hot, size_t granule)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        die("cannot write hotmap %s", path);
    }
    for (uint64_t r = 0; r < hot; r++) {
        fprintf(f, "%p\n", (void *)(buf + granule_of(l, r) * granule));
    }
    fclose(f);
}

static void wait_for(const char *path)
{
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);
    while (access(path, F_OK) != 0) {
        usleep(10000);
    }
}

int main(int argc, char **argv)
{
    struct options o;
    parse(argc, argv, &o);
    size_t granule = o.granule_kib * 1024, size = o.size_mib * MIB, log_size = o.log_mib * MIB;
    uint64_t n = size / granule, hot = o.hot_mib * MIB / granule, lines = granule / LINE;
    uint64_t rng = o.seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;

    struct sampler s = {0};
    s.n = make_buckets(n, hot, &s.buckets);
    int uniform = o.hot_share * o.size_mib <= o.hot_mib;
    double theta = uniform || o.step ? 0 : solve_theta(s.buckets, s.n, hot, o.hot_share);
    set_masses(&s, theta, o.step && !uniform, hot, n, o.hot_share);
    make_alias(&s);
    double expected = 0;
    for (size_t i = 0; i < s.n && s.buckets[i].start < hot; i++) {
        expected += s.buckets[i].mass;
    }
    struct layout l = make_layout(n, o.tail, &rng);

    char *buf = mmap(NULL, size + log_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        die("cannot map the buffer: %s", strerror(errno));
    }
    if (!o.huge_pages && madvise(buf, size + log_size, MADV_NOHUGEPAGE) != 0) {
        die("cannot turn huge pages off for the buffer: %s", strerror(errno));
    }
    double t0 = now_s();
    for (size_t off = 0; off < size + log_size; off += 4096) { /* first touch, in address order */
        buf[off] = 1;
    }
    double init_s = now_s() - t0;
    if (o.hotmap) {
        write_hotmap(o.hotmap, buf, &l, hot, granule);
    }
    if (o.wait) {
        wait_for(o.wait);
    }

    struct census *c = malloc(sizeof(*c));
    c->hot_len = census_pages(c->hot, buf, &l, 0, hot, granule);
    c->cold_len = census_pages(c->cold, buf, &l, hot, n, granule); /* none when all is hot */
    c->log_len = census_span(c->log, buf + size, log_size);
    unsigned long ticks = 0;
    uint64_t read_cut = (uint64_t)(o.reads * 18446744073709551615.0), reads = 0, hot_ops = 0, head_ops = 0, logged = 0, sum = 0, i;
    double tick = o.tick_ms / 1000.0, next_tick = tick, now;
    double user0, sys0, user1, sys1;
    cpu_s(&user0, &sys0);
    PHASE_BEGINS();
    t0 = now_s();
    for (i = 0; o.seconds > 0 || i < o.ops; i++) {
        if (o.seconds > 0 && i % CLOCK_EVERY == 0 && (now = now_s() - t0) >= next_tick) {
            printf("tick t=%.3f ops=%lu\n", now, (unsigned long)i);
            fflush(stdout);
            if (o.census_ticks && ++ticks % o.census_ticks == 0) {
                census(now, c);
            }
            next_tick += tick * (1 + (uint64_t)((now - next_tick) / tick)); /* skip ticks missed, never bunch */
            if (now >= o.seconds) {
                break;
            }
        }
        int read = o.reads >= 1 || next(&rng) < read_cut;
        if (!read && log_size) {
            *(volatile uint64_t *)(buf + size + (next(&rng) % (log_size / LINE)) * LINE) = i;
            logged++;
            continue;
        }
        uint64_t rank = sample_rank(&s, &rng);
        uint64_t *word = (uint64_t *)(buf + granule_of(&l, rank) * granule + (next(&rng) % lines) * LINE);
        hot_ops += rank < hot;
        head_ops += rank < (hot + 7) / 8; /* the hot set's hottest eighth: how steep the law is inside it */
        if (read) {
            sum += *(volatile uint64_t *)word;
            reads++;
        } else {
            *(volatile uint64_t *)word = i;
        }
    }
    double seconds = now_s() - t0;
    PHASE_ENDS();
    o.ops = i;
    cpu_s(&user1, &sys1);
    if (o.seconds > 0 && o.census_ticks) {
        census(seconds, c);
    }
    printf("workload=skewed_access ops=%lu seconds=%.6f ops_per_s=%.1f reads=%lu writes=%lu hot_ops=%lu head_ops=%lu "
           "log_writes=%lu hot_share=%.5f expected_hot_share=%.5f theta=%.4f step=%d init_s=%.3f size_mib=%lu hot_mib=%lu "
           "granule_kib=%lu log_mib=%lu seed=%lu user_s=%.3f sys_s=%.3f checksum=%lu\n",
           o.ops, seconds, o.ops / seconds, reads, o.ops - reads, hot_ops, head_ops, (unsigned long)logged,
           o.ops > logged ? (double)hot_ops / (o.ops - logged) : 0.0,
           expected, theta, o.step, init_s, o.size_mib, o.hot_mib, o.granule_kib, o.log_mib, o.seed,
           user1 - user0, sys1 - sys0, sum);
    return 0;
}
