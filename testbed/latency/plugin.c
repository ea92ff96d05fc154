/*
 * llamas-latency: a QEMU TCG plugin that makes each guest memory node as slow
 * as its topology says, and counts what every node served.
 *
 * Every data access is classified by guest physical address to a node, passes
 * through a set-associative LRU cache model (the last-level cache), and a miss
 * owes that node's read or write delay.  Debt is paid in batches with
 * nanosleep: sleeping once per ~20 us keeps the overhead low, and carrying
 * oversleep over as credit keeps the average exact.  Time the emulator spent
 * waiting for a host CPU is credited against the debt (see pay_debt).  Counters per vCPU and
 * node are read and reset from the host over a UNIX socket while the guest
 * runs.
 *
 * Streams: a miss on the line right after a recent miss (a page copy, a page
 * being zeroed, a sequential scan) is what a hardware prefetcher or a write-
 * combining stream serves at the node's bandwidth, not at its latency.  Such a
 * miss owes the node's delay times its stream factor (line size / bandwidth
 * over latency, from the topology), so the kernel's page migrations cost what
 * they cost on the modelled machine; random misses are unchanged.
 *
 * Cores of different speed (a sibling job in the same plugin): a vCPU with
 * speed s < 1 owes (1/s - 1) ns of sleep for every ns of CPU time its thread
 * spends running it, so its instruction rate is s times what it would be;
 * sleeps and halts are no CPU time and never count.  Host contention is: a
 * fast vCPU's loop on a busy host takes its CPU time plus its waits for a host
 * CPU, so the slow vCPU's computing is stretched by the same factor, (CPU time
 * + run-queue wait) / CPU time of its own interval, before the 1/s; counting
 * CPU time alone, one busy host process made a slow core feel 0.47 where it
 * felt 0.38 (its waits were added once; the fast core's were its slowdown).  A slow
 * core computes slower, but its misses wait on memory as long as a fast core's:
 * so on a vCPU with memory callbacks the CPU time spent paying memory debt is
 * not counted, and neither is the emulator's own cost of each miss (`miss_cost`,
 * the calibration's base: what the guest feels per access at zero delay), which
 * its pace would otherwise stretch.  This
 * needs one thread per vCPU (`-accel tcg,thread=multi`, with `mem=0` or
 * `threads=multi`): with one TCG thread a sleep would stall every vCPU, and
 * QEMU then reports to a callback the vCPU that translated the block, not the
 * one running it (its plugin-gen.c compiles the index in as a constant
 * without CF_PARALLEL).
 *
 * Memory latency under one TCG thread (`-accel tcg,thread=single`, the
 * default) or one per vCPU (`threads=multi`).  Under one thread every vCPU
 * shares that thread's sleeps, and per-vCPU memory counters are by
 * translating vCPU, only a rough split.  Under multi-threaded TCG each vCPU
 * thread owes and sleeps off its own debt, follows its own streams (a core's
 * prefetcher) and counts its own accesses, exactly; the cache model, shared
 * like a last-level cache, is locked per stripe of sets.  QEMU 10.0's
 * qemu_plugin_get_hwaddr can abort in iotlb_to_section under MTTCG while the
 * memory map still changes (PCI and CXL set-up at boot: a vCPU may hold a TLB
 * entry of an older map), so with threads=multi the memory callbacks return
 * before the lookup until the host sends `arm`, once the guest is up.
 *
 * Initiators: a node can be slower from one socket's cores than from another's
 * (a two-socket machine's HMAT gives local and remote figures).  Each vCPU has
 * an initiator (`initiator=VCPU:INIT`, 0 unless given: the CPU node it sits on)
 * and a miss owes delay[initiator of the vCPU][node].  Under one TCG thread a
 * callback gets the translating vCPU, not the running one, so a miss would be
 * charged to whichever initiator translated the block: per-initiator arguments
 * are refused there (they need threads=multi).
 *
 * Arguments (QEMU splits them at commas):
 *   range=BASE:END:NODE   guest physical [BASE, END) in hex belongs to NODE (repeatable)
 *   delay=NODE:READ:WRITE ns owed per read / write miss on NODE, from every initiator (repeatable)
 *   delay=NODE:READ:WRITE@INIT  the same, from initiator INIT's vCPUs only (threads=multi)
 *   initiator=VCPU:INIT   VCPU's misses owe INIT's delays (repeatable; threads=multi)
 *   stream=NODE:READ:WRITE parts per million of the delay a streamed miss owes (default 1000000)
 *   cache_kib=N line=N ways=N   the cache model (default 16 MiB, 64 B, 16 ways)
 *   batch_ns=N            pay debt once it exceeds N ns (default 20000)
 *   credit_cap_ns=N       host-CPU wait carried as credit, at most (default 5 ms)
 *   speed=VCPU:PERMILLE   run VCPU at PERMILLE/1000 of the emulator's speed (repeatable)
 *   mem=0                 no memory callbacks: core pacing only (multi-threaded TCG)
 *   threads=multi         QEMU runs a TCG thread per vCPU: lock the cache model, and
 *                         count and delay nothing until `arm`
 *   pace_batch_ns=N       a slow vCPU sleeps once it owes N ns (default 1 ms)
 *   sock=PATH             control socket (optional)
 *
 * Control protocol, one line per request, one line per answer:
 *   read                  -> JSON counters since the last reset (and each vCPU's
 *                            host ns holding the TCG thread, "ran_ns")
 *   reset                 -> ok
 *   flush                 -> ok  (empty the cache model before the next access)
 *   arm                   -> ok  (threads=multi: start looking accesses up)
 *   delay NODE READ WRITE -> ok  (change a node's delays, from every initiator, while running)
 *   delay NODE READ WRITE INIT -> ok  (the same from initiator INIT only; threads=multi)
 *   range BASE END NODE   -> ok  (add a range, hex, e.g. a CXL window)
 *   speed VCPU PERMILLE   -> ok  (change a vCPU's speed while running)
 *   miss_cost READ WRITE  -> ok  (the emulator's ns per missed read / write, kept out
 *                            of a paced vCPU's CPU time on each miss)
 *   marks                 -> {"begin": COUNTERS, "end": COUNTERS}: what `read` would have
 *                            answered at the guest's phase marks since the last reset
 *                            (null where none ran), see "Phase marks" below
 *   config                -> JSON of ranges, delays and cache geometry; "delays" are initiator
 *                            0's, "initiator_delays" every initiator's up to the highest a vCPU
 *                            has, "initiators" each vCPU's up to the last one given one
 *
 * Phase marks: a guest program brackets its timed phase with two no-ops the
 * plugin knows, `nopl 0x304d4c4c(%rax)` and `nopl 0x314d4c4c(%rax)` (0f 1f 80
 * "LLM0" / "LLM1"), which any x86-64 CPU runs as no-ops.  At each the plugin
 * keeps what `read` would answer then, so the host gets the counters of the
 * phase itself, not of its set-up, its exit (the kernel freeing its memory)
 * or the harness's commands around it, however late it reads.
 *
 * Debian ships no qemu-plugin.h, so the few API pieces used are declared
 * below, copied in layout from QEMU's include/qemu/qemu-plugin.h (API 2..4).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- the QEMU plugin API subset (layouts from qemu-plugin.h) ------------- */

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
typedef struct qemu_info_t {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_plugin_hwaddr;
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *insn, void *dest, size_t len); /* copying: QEMU 9.0 on */
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
struct qemu_plugin_hwaddr *qemu_plugin_get_hwaddr(qemu_plugin_meminfo_t info, uint64_t vaddr);
bool qemu_plugin_hwaddr_is_io(const struct qemu_plugin_hwaddr *haddr);
uint64_t qemu_plugin_hwaddr_phys_addr(const struct qemu_plugin_hwaddr *haddr);
/* API 3 (QEMU 9.1): per-vCPU scoreboards, inline adds and conditional callbacks; used for pacing only. */
struct qemu_plugin_scoreboard;
typedef struct { struct qemu_plugin_scoreboard *score; size_t offset; } qemu_plugin_u64;
enum qemu_plugin_cond { QEMU_PLUGIN_COND_NEVER, QEMU_PLUGIN_COND_ALWAYS, QEMU_PLUGIN_COND_EQ, QEMU_PLUGIN_COND_NE,
                        QEMU_PLUGIN_COND_LT, QEMU_PLUGIN_COND_LE, QEMU_PLUGIN_COND_GT, QEMU_PLUGIN_COND_GE };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64, QEMU_PLUGIN_INLINE_STORE_U64 };
struct qemu_plugin_scoreboard *qemu_plugin_scoreboard_new(size_t element_size);
uint64_t qemu_plugin_u64_get(qemu_plugin_u64 entry, unsigned int vcpu_index);
void qemu_plugin_u64_set(qemu_plugin_u64 entry, unsigned int vcpu_index, uint64_t val);
void qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                                       qemu_plugin_u64 entry, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cond_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                               enum qemu_plugin_cb_flags flags, enum qemu_plugin_cond cond,
                                               qemu_plugin_u64 entry, uint64_t imm, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
typedef void (*qemu_plugin_vcpu_simple_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index);
void qemu_plugin_register_vcpu_idle_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
void qemu_plugin_outs(const char *string);

/* API 2 is the oldest that QEMU 10 accepts and has everything used here. */
QEMU_PLUGIN_EXPORT int qemu_plugin_version = 2;

/* ---- state --------------------------------------------------------------- */

#define MAX_NODES 16
#define MAX_VCPUS 64
#define MAX_RANGES 64
#define OTHER MAX_NODES /* counter slot for addresses no range claims */

struct range { uint64_t base, end; int node; };
struct counters { uint64_t accesses, reads, writes, misses, read_misses, write_misses, streamed, delay_ns; };

static struct range ranges[MAX_RANGES];
static volatile int n_ranges;
#define MAX_INITIATORS MAX_NODES /* an initiator is a node with CPUs */
static volatile uint64_t delay_ns[MAX_INITIATORS][MAX_NODES][2]; /* [initiator][node][0 read, 1 write] */
static unsigned char vcpu_initiator[MAX_VCPUS]; /* initiator=VCPU:INIT; 0 unless given */
static bool per_initiator; /* an initiator= or delay=...@INIT argument: needs threads=multi */
#define PPM 1000000u
static uint64_t stream_ppm[MAX_NODES][2]; /* set to PPM (no discount) at install */
#define STREAMS 16 /* sequential streams followed at once, as a hardware prefetcher tracks */
#define STREAM_TRAIN 2 /* lines in a row before a stream is served at bandwidth */
/* Per TCG thread: one thread holds every vCPU under thread=single, so nothing
 * changes there; under threads=multi each vCPU keeps its own, as each core does. */
static __thread struct { uint64_t next_line, run; } streams[STREAMS];
static __thread unsigned stream_victim;

static unsigned line_shift = 6, ways = 16;
static uint64_t n_sets, set_mask, cache_kib = 16 * 1024;
static uint64_t *tags; /* n_sets * ways line numbers + 1 (0 = empty), MRU first */
#define SET_LOCKS 256 /* threads=multi: sets are locked in stripes */
static pthread_spinlock_t set_locks[SET_LOCKS];
static bool multi;               /* threads=multi */
static bool armed = true;        /* threads=multi starts false; `arm` sets it */
/* Bumped by `flush`; each thread drops its own streams on a change.  Under thread=single the
 * one thread that emulates memory also empties the tags then, so the cache model never has
 * two writers; under threads=multi the control thread empties them, under every set lock. */
static unsigned flush_generation;

static uint64_t batch_ns = 20000;
static uint64_t credit_cap_ns = 5000000; /* the most host-CPU wait carried ahead as credit */
static __thread int64_t debt_ns; /* per TCG thread; may go negative: oversleep is credit */
static uint64_t slept_ns, sleeps, credited_ns; /* every thread's, added atomically */

/* Written only by the thread running (thread=single: translating) that vCPU; the
 * control thread reads them and keeps a baseline for "reset", so no counter is
 * ever written by two threads. */
static struct counters count[MAX_VCPUS][MAX_NODES + 1];
static struct counters base[MAX_VCPUS][MAX_NODES + 1];
static uint64_t slept_base, sleeps_base, credited_base;
static pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;
#define MARKS 2 /* phase marks: begin, end (see the top) */
static char mark_text[MARKS][32768]; /* `read`'s answer at each, under control_lock; 0 length: none yet */
static size_t mark_len[MARKS];

/* Pacing of slow vCPUs (see the top): per vCPU, touched only by its own thread. */
#define PACE_INSNS (1u << 16) /* instructions between two reads of the thread's CPU clock */
struct pace { uint64_t permille, insns, mark_ns, ran_ns, slept_ns, forgiven_ns, wait_mark, queued_ns; int64_t owed_ns; };
static struct pace pace[MAX_VCPUS];
static struct { uint64_t insns, ran_ns, slept_ns, queued_ns; } pace_base[MAX_VCPUS];
static bool pacing;      /* some vCPU is slower than the emulator */
static qemu_plugin_u64 pending; /* per vCPU: instructions since its last check, added inline */
static bool mem_cbs = true; /* mem=0: pacing only (needed with multi-threaded TCG) */
static uint64_t pace_batch_ns = 1000000; /* sleep in ~1 ms pieces: fewer wake-ups, less cold cache */
static uint64_t miss_cost_ns[2];          /* read, write: the emulator's own ns per miss (see the top) */

/* Host time by vCPU (thread=single runs one vCPU at a time, in turn): a kernel thread
 * on another vCPU takes its time from the workload here, where a machine with as many
 * cores would run both at once.  Switches are seen on an access under another vCPU
 * index, which is the translating vCPU's (see above), so the split is rough; the sum is
 * the host time that passed. */
static uint64_t ran_ns[MAX_VCPUS], ran_base[MAX_VCPUS];
static int running_vcpu = -1;
static uint64_t running_since;

static char sock_path[108];
static int listen_fd = -1;

/* ---- the hot path ------------------------------------------------------- */

static inline int classify(uint64_t pa)
{
    int n = n_ranges;
    for (int i = 0; i < n; i++) {
        if (pa >= ranges[i].base && pa < ranges[i].end) {
            return ranges[i].node;
        }
    }
    return OTHER;
}

/* Look `line` up in its set and make it most recent.  True on a hit. */
static inline bool set_access(uint64_t *set, uint64_t line)
{
    for (unsigned w = 0; w < ways; w++) {
        if (set[w] == line) {
            memmove(set + 1, set, w * sizeof(*set));
            set[0] = line;
            return true;
        }
    }
    memmove(set + 1, set, (ways - 1) * sizeof(*set));
    set[0] = line;
    return false;
}

/* True on a hit. LRU by keeping each set's ways in recency order. */
static inline bool cache_access(uint64_t pa)
{
    static __thread uint64_t last_line;
    static __thread unsigned seen_generation;
    uint64_t line = (pa >> line_shift) + 1;
    unsigned generation = __atomic_load_n(&flush_generation, __ATOMIC_ACQUIRE);
    if (generation != seen_generation) {
        if (!multi) {
            memset(tags, 0, n_sets * ways * sizeof(*tags));
        }
        memset(streams, 0, sizeof(streams));
        last_line = 0;
        seen_generation = generation;
    }
    if (line == last_line) {
        return true; /* most recent in its set (for this thread): nothing to update (stack, sequential words) */
    }
    last_line = line;
    uint64_t index = set_mask ? line & set_mask : line % n_sets; /* a mask where sets are a power of two */
    if (!multi) {
        return set_access(tags + index * ways, line);
    }
    pthread_spinlock_t *lock = &set_locks[index % SET_LOCKS];
    pthread_spin_lock(lock);
    bool hit = set_access(tags + index * ways, line);
    pthread_spin_unlock(lock);
    return hit;
}

/* True if `line` (a miss) continues a trained stream: it follows STREAM_TRAIN
 * misses on the lines just before it, as a prefetcher needs a few ascending
 * misses before it runs ahead (so random misses that happen to neighbour one
 * another are not served as a stream).  A new stream replaces the oldest. */
static inline bool stream_continues(uint64_t line)
{
    for (unsigned i = 0; i < STREAMS; i++) {
        if (streams[i].next_line == line) {
            streams[i].next_line = line + 1;
            return ++streams[i].run >= STREAM_TRAIN;
        }
    }
    streams[stream_victim].next_line = line + 1;
    streams[stream_victim].run = 0;
    stream_victim = (stream_victim + 1) % STREAMS;
    return false;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ns this thread has waited on a run queue (runnable, not running), from
 * /proc/thread-self/schedstat; 0 where the kernel does not keep schedstats. */
static uint64_t run_delay_ns(void)
{
    static __thread int fd = -2;
    char text[96];
    unsigned long long cpu, waited;
    if (fd == -2) {
        fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    }
    ssize_t got = fd < 0 ? -1 : pread(fd, text, sizeof(text) - 1, 0);
    if (got <= 0) {
        return 0;
    }
    text[got] = 0;
    return sscanf(text, "%llu %llu", &cpu, &waited) == 2 ? waited : 0;
}

/* Sleep off the debt; whatever the kernel over- or under-sleeps is carried.
 * Time the emulator lost waiting for a CPU since the last payment (other
 * processes on a shared host) is credited against the debt: the guest has
 * already felt it, and counting it once keeps the felt latency steady under
 * host load.  A preemption can last milliseconds, longer than one batch, so
 * credit may run ahead of the debt, up to credit_cap_ns; halted (idle) time
 * is no run-queue wait and earns none. */
static void pay_debt(struct pace *p)
{
    bool paced = p && p->permille && p->permille < 1000 && p->mark_ns;
    uint64_t cpu_before = paced ? thread_cpu_ns() : 0;
    static __thread bool slack_set;
    static __thread uint64_t waited_mark;
    if (!slack_set) {
        prctl(PR_SET_TIMERSLACK, 1UL); /* default 50 us slack would dwarf a 20 us batch */
        slack_set = true;
        waited_mark = run_delay_ns();
    }
    uint64_t waited_now = run_delay_ns();
    if (paced) {
        p->wait_mark = waited_now; /* waits up to here are credited to memory, not stretched by the pace */
    }
    int64_t before = debt_ns;
    debt_ns -= (int64_t)(waited_now - waited_mark);
    waited_mark = waited_now;
    if (debt_ns < -(int64_t)credit_cap_ns) {
        debt_ns = -(int64_t)credit_cap_ns;
    }
    __atomic_fetch_add(&credited_ns, (uint64_t)(before - debt_ns), __ATOMIC_RELAXED);
    if (debt_ns <= 0) {
        return;
    }
    uint64_t start = now_ns();
    struct timespec ts = { (time_t)(debt_ns / 1000000000), (long)(debt_ns % 1000000000) };
    nanosleep(&ts, NULL);
    uint64_t slept = now_ns() - start;
    debt_ns -= (int64_t)slept;
    __atomic_fetch_add(&slept_ns, slept, __ATOMIC_RELAXED);
    __atomic_fetch_add(&sleeps, 1, __ATOMIC_RELAXED);
    waited_mark = run_delay_ns(); /* a wait to run again after the sleep is in `slept` already */
    if (paced) {
        p->mark_ns += thread_cpu_ns() - cpu_before; /* paying memory debt is not the vCPU computing */
        p->wait_mark = waited_mark;
    }
}

/* A paced vCPU's miss: the emulator's own cost of it is memory time, not compute,
 * so its share of the CPU time is kept out of the pace at the next check. */
static inline void forgive_miss(struct pace *p, bool store)
{
    p->forgiven_ns += __atomic_load_n(&miss_cost_ns[store], __ATOMIC_RELAXED);
}

/* A slow vCPU owes (1000 / permille - 1) ns of sleep per ns of CPU time its
 * thread spent running it; sleeping it off stretches only that vCPU's time. */
static void pace_pay(struct pace *p)
{
    bool slow = p->permille && p->permille < 1000;
    uint64_t cpu = thread_cpu_ns();
    uint64_t ran = p->mark_ns ? cpu - p->mark_ns : 0;
    p->mark_ns = cpu;
    p->ran_ns += ran;
    /* CPU time spent on misses was memory, not compute: at most all of this interval's */
    uint64_t computed = ran > p->forgiven_ns ? ran - p->forgiven_ns : 0;
    p->forgiven_ns = 0;
    if (slow) {
        uint64_t waited = run_delay_ns();
        uint64_t queued = p->wait_mark && waited > p->wait_mark ? waited - p->wait_mark : 0;
        p->wait_mark = waited;
        p->queued_ns += queued;
        /* computing on this host, as loaded as it is now: the compute share of the interval's waits too */
        double busy = (double)computed + (ran ? (double)queued * computed / ran : 0);
        p->owed_ns += (int64_t)(busy * (1000 - p->permille) / p->permille);
    }
    if (p->owed_ns <= (int64_t)pace_batch_ns) {
        return;
    }
    uint64_t start = now_ns();
    struct timespec ts = { (time_t)(p->owed_ns / 1000000000), (long)(p->owed_ns % 1000000000) };
    nanosleep(&ts, NULL);
    uint64_t slept = now_ns() - start;
    p->owed_ns -= (int64_t)slept; /* oversleep is carried as credit */
    p->slept_ns += slept;
    p->mark_ns = thread_cpu_ns(); /* the sleep call's own CPU time is not the vCPU running */
    p->wait_mark = run_delay_ns(); /* nor its wake-up's wait, which `slept` holds */
}

/* Called once a vCPU has run PACE_INSNS instructions since its last check: a
 * callback per block cost five times the loop it paced, an inline add does not. */
static void on_pace_check(unsigned int vcpu, void *udata)
{
    if (vcpu >= MAX_VCPUS) {
        return;
    }
    pace[vcpu].insns += qemu_plugin_u64_get(pending, vcpu);
    qemu_plugin_u64_set(pending, vcpu, 0);
    pace_pay(&pace[vcpu]);
}

static void vcpu_stops(uint64_t now)
{
    if (running_vcpu >= 0) {
        ran_ns[running_vcpu] += now - running_since;
    }
    running_vcpu = -1;
}

static void on_idle(qemu_plugin_id_t id, unsigned int vcpu)
{
    if (!multi && (int)vcpu == running_vcpu) {
        vcpu_stops(now_ns());
    }
}

static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    if (!__atomic_load_n(&armed, __ATOMIC_RELAXED)) {
        return; /* threads=multi before `arm`: no lookup while the memory map may still change */
    }
    if (!multi && (int)vcpu != running_vcpu && vcpu < MAX_VCPUS) {
        uint64_t now = now_ns();
        vcpu_stops(now);
        running_vcpu = (int)vcpu;
        running_since = now;
    }
    struct qemu_plugin_hwaddr *hw = qemu_plugin_get_hwaddr(info, vaddr);
    if (!hw) {
        return;
    }
    uint64_t pa = qemu_plugin_hwaddr_phys_addr(hw);
    int node = classify(pa);
    bool store = qemu_plugin_mem_is_store(info);
    struct counters *c = &count[vcpu < MAX_VCPUS ? vcpu : MAX_VCPUS - 1][node];
    c->accesses++;
    if (store) {
        c->writes++;
    } else {
        c->reads++;
    }
    if (node == OTHER || cache_access(pa)) {
        return;
    }
    uint64_t owed = delay_ns[vcpu < MAX_VCPUS ? vcpu_initiator[vcpu] : 0][node][store];
    if (stream_continues((pa >> line_shift) + 1)) {
        owed = owed * stream_ppm[node][store] / PPM;
        c->streamed++;
    }
    c->misses++;
    if (store) {
        c->write_misses++;
    } else {
        c->read_misses++;
    }
    c->delay_ns += owed;
    struct pace *p = pacing && vcpu < MAX_VCPUS ? &pace[vcpu] : NULL;
    if (p) {
        forgive_miss(p, store);
    }
    debt_ns += (int64_t)owed;
    if (debt_ns > (int64_t)batch_ns) {
        pay_debt(p);
    }
}

static size_t format_counters(char *out, size_t size);

/* A phase mark ran (see the top): keep what `read` would answer now. */
static void on_mark(unsigned int vcpu, void *udata)
{
    int m = (int)(uintptr_t)udata;
    pthread_mutex_lock(&control_lock);
    size_t len = format_counters(mark_text[m], sizeof(mark_text[m]));
    mark_len[m] = len < sizeof(mark_text[m]) ? len - 1 : 0; /* without its newline; never a cut one */
    pthread_mutex_unlock(&control_lock);
}

/* Which phase mark `insn` is (0 or 1), or -1: the 7-byte `nopl 0x3N4d4c4c(%rax)`. */
static int mark_of(const struct qemu_plugin_insn *insn)
{
    static const uint8_t mark[6] = { 0x0f, 0x1f, 0x80, 'L', 'L', 'M' };
    uint8_t bytes[7];
    if (qemu_plugin_insn_size(insn) != sizeof(bytes) || qemu_plugin_insn_data(insn, bytes, 7) != sizeof(bytes) ||
        memcmp(bytes, mark, sizeof(mark)) != 0 || bytes[6] < '0' || bytes[6] >= '0' + MARKS) {
        return -1;
    }
    return bytes[6] - '0';
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (pacing) {
        qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(tb, QEMU_PLUGIN_INLINE_ADD_U64, pending, n);
        qemu_plugin_register_vcpu_tb_exec_cond_cb(tb, on_pace_check, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_COND_GE,
                                                  pending, PACE_INSNS, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (mem_cbs) {
            qemu_plugin_register_vcpu_mem_cb(insn, on_mem, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
        }
        int m = mark_of(insn);
        if (m >= 0) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)m);
        }
    }
}

/* ---- control socket ------------------------------------------------------ */

static void add_counters(struct counters *sum, const struct counters *now, const struct counters *was)
{
    sum->accesses += now->accesses - was->accesses;
    sum->reads += now->reads - was->reads;
    sum->writes += now->writes - was->writes;
    sum->misses += now->misses - was->misses;
    sum->read_misses += now->read_misses - was->read_misses;
    sum->write_misses += now->write_misses - was->write_misses;
    sum->streamed += now->streamed - was->streamed;
    sum->delay_ns += now->delay_ns - was->delay_ns;
}

static int put_counters(char *out, size_t size, const char *key, int id, const struct counters *c)
{
    return snprintf(out, size,
                    "{\"%s\":%d,\"accesses\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
                    ",\"misses\":%" PRIu64 ",\"read_misses\":%" PRIu64 ",\"write_misses\":%" PRIu64
                    ",\"streamed\":%" PRIu64 ",\"delay_ns\":%" PRIu64 "}",
                    key, id, c->accesses, c->reads, c->writes, c->misses, c->read_misses,
                    c->write_misses, c->streamed, c->delay_ns);
}

/* JSON: per node (id -1 = unclassified), per vCPU (only those that ran), host time per vCPU, sleep totals. */
static size_t format_counters(char *out, size_t size)
{
    struct counters per_node[MAX_NODES + 1] = {0}, per_vcpu[MAX_VCPUS] = {0};
    for (int v = 0; v < MAX_VCPUS; v++) {
        for (int n = 0; n <= MAX_NODES; n++) {
            struct counters now = count[v][n]; /* one snapshot, so both sums agree */
            add_counters(&per_node[n], &now, &base[v][n]);
            add_counters(&per_vcpu[v], &now, &base[v][n]);
        }
    }
    int max_node = 0;
    for (int i = 0; i < n_ranges; i++) {
        max_node = ranges[i].node > max_node ? ranges[i].node : max_node;
    }
    size_t len = snprintf(out, size, "{\"nodes\":[");
    for (int n = 0; n <= max_node; n++) {
        len += put_counters(out + len, size - len, "node", n, &per_node[n]);
        len += snprintf(out + len, size - len, ",");
    }
    len += put_counters(out + len, size - len, "node", -1, &per_node[OTHER]);
    len += snprintf(out + len, size - len, "],\"vcpus\":[");
    bool first = true;
    for (int v = 0; v < MAX_VCPUS; v++) {
        if (per_vcpu[v].accesses == 0) {
            continue;
        }
        len += snprintf(out + len, size - len, first ? "" : ",");
        len += put_counters(out + len, size - len, "vcpu", v, &per_vcpu[v]);
        first = false;
    }
    len += snprintf(out + len, size - len, "],\"ran_ns\":[");
    first = true;
    int now_running = running_vcpu; /* the vCPU thread moves these on: read each once */
    uint64_t since = running_since, now = now_ns();
    for (int v = 0; v < MAX_VCPUS; v++) {
        int64_t ran = (int64_t)(ran_ns[v] - ran_base[v]);
        if (v == now_running && now > since) {
            ran += (int64_t)(now - since); /* the one running now, up to this moment */
        }
        if (ran <= 0) { /* a switch between this thread's reads can count one slice twice: never below 0 */
            continue;
        }
        len += snprintf(out + len, size - len, "%s{\"vcpu\":%d,\"ns\":%" PRId64 "}", first ? "" : ",", v, ran);
        first = false;
    }
    len += snprintf(out + len, size - len, "],\"pace\":[");
    first = true;
    for (int v = 0; v < MAX_VCPUS; v++) {
        if (pace[v].insns == 0) {
            continue;
        }
        len += snprintf(out + len, size - len,
                        "%s{\"vcpu\":%d,\"permille\":%" PRIu64 ",\"insns\":%" PRIu64 ",\"ran_ns\":%" PRIu64
                        ",\"slept_ns\":%" PRIu64 ",\"queued_ns\":%" PRIu64 "}",
                        first ? "" : ",", v, pace[v].permille ? pace[v].permille : 1000, pace[v].insns - pace_base[v].insns,
                        pace[v].ran_ns - pace_base[v].ran_ns,
                        pace[v].slept_ns - pace_base[v].slept_ns,
                        pace[v].queued_ns - pace_base[v].queued_ns);
        first = false;
    }
    len += snprintf(out + len, size - len,
                    "],\"slept_ns\":%" PRIu64 ",\"sleeps\":%" PRIu64 ",\"credited_ns\":%" PRIu64 "}\n",
                    slept_ns - slept_base, sleeps - sleeps_base, credited_ns - credited_base);
    return len;
}

/* One initiator's delays: [[read, write] per node]. */
static size_t format_delays(char *out, size_t size, int initiator)
{
    size_t len = snprintf(out, size, "[");
    for (int n = 0; n < MAX_NODES; n++) {
        len += snprintf(out + len, size - len, "%s[%" PRIu64 ",%" PRIu64 "]", n ? "," : "",
                        delay_ns[initiator][n][0], delay_ns[initiator][n][1]);
    }
    return len + snprintf(out + len, size - len, "]");
}

/* ,"initiator_delays":[...],"initiators":[...]: short on a machine with one initiator. */
static size_t format_initiators(char *out, size_t size)
{
    int last_vcpu = -1, top = 0;
    for (int v = 0; v < MAX_VCPUS; v++) {
        if (vcpu_initiator[v]) {
            last_vcpu = v;
            top = vcpu_initiator[v] > top ? vcpu_initiator[v] : top;
        }
    }
    size_t len = snprintf(out, size, ",\"initiator_delays\":[");
    for (int i = 0; i <= top; i++) {
        len += snprintf(out + len, size - len, i ? "," : "");
        len += format_delays(out + len, size - len, i);
    }
    len += snprintf(out + len, size - len, "],\"initiators\":[");
    for (int v = 0; v <= last_vcpu; v++) {
        len += snprintf(out + len, size - len, "%s%d", v ? "," : "", vcpu_initiator[v]);
    }
    return len + snprintf(out + len, size - len, "]");
}

static size_t format_config(char *out, size_t size)
{
    size_t len = snprintf(out, size, "{\"ranges\":[");
    for (int i = 0; i < n_ranges; i++) {
        len += snprintf(out + len, size - len, "%s[%" PRIu64 ",%" PRIu64 ",%d]", i ? "," : "",
                        ranges[i].base, ranges[i].end, ranges[i].node);
    }
    len += snprintf(out + len, size - len, "],\"delays\":");
    len += format_delays(out + len, size - len, 0);
    len += format_initiators(out + len, size - len);
    len += snprintf(out + len, size - len, ",\"stream_ppm\":[");
    for (int n = 0; n < MAX_NODES; n++) {
        len += snprintf(out + len, size - len, "%s[%" PRIu64 ",%" PRIu64 "]", n ? "," : "",
                        stream_ppm[n][0], stream_ppm[n][1]);
    }
    return len + snprintf(out + len, size - len,
                          "],\"cache_kib\":%" PRIu64 ",\"line\":%u,\"ways\":%u,\"sets\":%" PRIu64
                          ",\"batch_ns\":%" PRIu64 ",\"credit_cap_ns\":%" PRIu64
                          ",\"threads\":\"%s\",\"armed\":%s,\"miss_cost\":[%" PRIu64 ",%" PRIu64 "]}\n",
                          cache_kib, 1u << line_shift, ways, n_sets, batch_ns, credit_cap_ns,
                          multi ? "multi" : "single", __atomic_load_n(&armed, __ATOMIC_ACQUIRE) ? "true" : "false",
                          __atomic_load_n(&miss_cost_ns[0], __ATOMIC_RELAXED),
                          __atomic_load_n(&miss_cost_ns[1], __ATOMIC_RELAXED));
}

static bool add_range(uint64_t lo, uint64_t hi, int node)
{
    if (n_ranges >= MAX_RANGES || node < 0 || node >= MAX_NODES || hi <= lo) {
        return false;
    }
    ranges[n_ranges] = (struct range){ lo, hi, node };
    __atomic_store_n(&n_ranges, n_ranges + 1, __ATOMIC_RELEASE); /* publish after the entry */
    return true;
}

#define EVERY_INITIATOR (-1)

/* A node's delays from one initiator's vCPUs, or from every initiator's. */
static bool set_delay(int initiator, int node, uint64_t rd, uint64_t wr)
{
    if (node < 0 || node >= MAX_NODES || initiator < EVERY_INITIATOR || initiator >= MAX_INITIATORS) {
        return false;
    }
    for (int i = 0; i < MAX_INITIATORS; i++) {
        if (initiator == EVERY_INITIATOR || i == initiator) {
            delay_ns[i][node][0] = rd;
            delay_ns[i][node][1] = wr;
        }
    }
    return true;
}

static bool set_initiator(int vcpu, int initiator)
{
    if (vcpu < 0 || vcpu >= MAX_VCPUS || initiator < 0 || initiator >= MAX_INITIATORS) {
        return false;
    }
    vcpu_initiator[vcpu] = (unsigned char)initiator;
    per_initiator = true;
    return true;
}

/* delay=NODE:READ:WRITE or delay=NODE:READ:WRITE@INIT, nothing after. */
static bool parse_delay(const char *arg)
{
    int node, initiator, used = 0, tail = 0;
    uint64_t rd, wr;
    if (sscanf(arg, "delay=%d:%" SCNu64 ":%" SCNu64 "%n", &node, &rd, &wr, &used) != 3 || used == 0) {
        return false;
    }
    if (arg[used] == 0) {
        return set_delay(EVERY_INITIATOR, node, rd, wr);
    }
    if (sscanf(arg + used, "@%d%n", &initiator, &tail) != 1 || tail == 0 || arg[used + tail] != 0 ||
        initiator < 0) {
        return false;
    }
    per_initiator = true;
    return set_delay(initiator, node, rd, wr);
}

/* initiator=VCPU:INIT, nothing after. */
static bool parse_initiator(const char *arg)
{
    int vcpu, initiator, used = 0;
    if (sscanf(arg, "initiator=%d:%d%n", &vcpu, &initiator, &used) != 2 || used == 0 || arg[used] != 0) {
        return false;
    }
    return set_initiator(vcpu, initiator);
}

/* `delay NODE READ WRITE [INIT]`: one initiator's only under threads=multi (see the top). */
static bool request_delay(const char *request)
{
    int node, initiator;
    uint64_t rd, wr;
    int got = sscanf(request, "delay %d %" SCNu64 " %" SCNu64 " %d", &node, &rd, &wr, &initiator);
    if (got == 3) {
        return set_delay(EVERY_INITIATOR, node, rd, wr);
    }
    return got == 4 && multi && initiator >= 0 && set_delay(initiator, node, rd, wr);
}

/* Speeds can change while running only where pacing was set up at start
 * (the per-block callback is placed at translation). */
static bool set_speed(int vcpu, uint64_t permille, bool at_start)
{
    if (vcpu < 0 || vcpu >= MAX_VCPUS || permille == 0 || permille > 1000 || (!at_start && !pacing)) {
        return false;
    }
    pace[vcpu].permille = permille;
    pacing |= at_start;
    return true;
}

/* Empty the cache model and every thread's streams (see flush_generation). */
static void flush_cache(void)
{
    if (multi) {
        for (int i = 0; i < SET_LOCKS; i++) {
            pthread_spin_lock(&set_locks[i]);
        }
        memset(tags, 0, n_sets * ways * sizeof(*tags));
        for (int i = SET_LOCKS - 1; i >= 0; i--) {
            pthread_spin_unlock(&set_locks[i]);
        }
    }
    __atomic_fetch_add(&flush_generation, 1, __ATOMIC_RELEASE);
}

static size_t answer(const char *request, char *out, size_t size)
{
    int node;
    uint64_t a, b;
    if (strncmp(request, "read", 4) == 0) {
        return format_counters(out, size);
    }
    if (strncmp(request, "config", 6) == 0) {
        return format_config(out, size);
    }
    if (strncmp(request, "marks", 5) == 0) {
        return snprintf(out, size, "{\"begin\":%.*s,\"end\":%.*s}\n",
                        (int)(mark_len[0] ? mark_len[0] : 4), mark_len[0] ? mark_text[0] : "null",
                        (int)(mark_len[1] ? mark_len[1] : 4), mark_len[1] ? mark_text[1] : "null");
    }
    if (strncmp(request, "reset", 5) == 0) {
        memcpy(base, count, sizeof(base));
        memcpy(ran_base, ran_ns, sizeof(ran_base));
        int now_running = running_vcpu;
        uint64_t since = running_since, now = now_ns();
        if (now_running >= 0 && now > since) {
            ran_base[now_running] += now - since; /* from this moment on */
        }
        slept_base = slept_ns;
        sleeps_base = sleeps;
        credited_base = credited_ns;
        memset(mark_len, 0, sizeof(mark_len));
        for (int v = 0; v < MAX_VCPUS; v++) {
            pace_base[v].insns = pace[v].insns;
            pace_base[v].ran_ns = pace[v].ran_ns;
            pace_base[v].slept_ns = pace[v].slept_ns;
            pace_base[v].queued_ns = pace[v].queued_ns;
        }
        return snprintf(out, size, "ok\n");
    }
    if (strncmp(request, "flush", 5) == 0) {
        flush_cache();
        return snprintf(out, size, "ok\n");
    }
    if (strncmp(request, "arm", 3) == 0) {
        __atomic_store_n(&armed, true, __ATOMIC_RELEASE);
        return snprintf(out, size, "ok\n");
    }
    if (strncmp(request, "delay ", 6) == 0 && request_delay(request)) {
        return snprintf(out, size, "ok\n");
    }
    if (sscanf(request, "speed %d %" SCNu64, &node, &a) == 2 && set_speed(node, a, false)) {
        return snprintf(out, size, "ok\n");
    }
    if (sscanf(request, "miss_cost %" SCNu64 " %" SCNu64, &a, &b) == 2 && a < 1000000 && b < 1000000) {
        __atomic_store_n(&miss_cost_ns[0], a, __ATOMIC_RELAXED);
        __atomic_store_n(&miss_cost_ns[1], b, __ATOMIC_RELAXED);
        return snprintf(out, size, "ok\n");
    }
    if (sscanf(request, "range %" SCNx64 " %" SCNx64 " %d", &a, &b, &node) == 3 && add_range(a, b, node)) {
        return snprintf(out, size, "ok\n");
    }
    return snprintf(out, size, "error: unknown or invalid request\n");
}

static void serve(int fd)
{
    static char out[2 * sizeof(mark_text[0]) + 64]; /* `marks` answers two counters */
    char request[256];
    size_t have = 0;
    ssize_t got;
    while ((got = read(fd, request + have, sizeof(request) - 1 - have)) > 0) {
        have += got;
        request[have] = 0;
        char *nl;
        while ((nl = strchr(request, '\n')) != NULL) {
            *nl = 0;
            pthread_mutex_lock(&control_lock);
            size_t len = answer(request, out, sizeof(out));
            pthread_mutex_unlock(&control_lock);
            if (write(fd, out, len) != (ssize_t)len) {
                return;
            }
            have -= nl + 1 - request;
            memmove(request, nl + 1, have + 1);
        }
        if (have == sizeof(request) - 1) {
            return; /* a line longer than any request: drop the client */
        }
    }
}

static void *control_thread(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) {
                continue;
            }
            return NULL;
        }
        serve(fd);
        close(fd);
    }
}

static bool start_control(void)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(sock_path) >= sizeof(addr.sun_path)) {
        return false;
    }
    strcpy(addr.sun_path, sock_path);
    unlink(sock_path);
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(listen_fd, 4) < 0) {
        return false;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, control_thread, NULL) != 0) {
        return false;
    }
    pthread_detach(thread);
    return true;
}

/* ---- install --------------------------------------------------------------- */

static void on_exit_cb(qemu_plugin_id_t id, void *udata)
{
    if (sock_path[0]) {
        unlink(sock_path);
    }
}

static void say(const char *fmt, const char *detail)
{
    char line[512];
    snprintf(line, sizeof(line), fmt, detail);
    qemu_plugin_outs(line);
    fputs(line, stderr); /* qemu_plugin_outs only shows with -d plugin */
}

static bool parse_arg(const char *arg)
{
    uint64_t lo, hi, rd, wr;
    int node;
    char *end;
    if (sscanf(arg, "range=%" SCNx64 ":%" SCNx64 ":%d", &lo, &hi, &node) == 3) {
        return add_range(lo, hi, node);
    }
    if (strncmp(arg, "delay=", 6) == 0) {
        return parse_delay(arg);
    }
    if (strncmp(arg, "initiator=", 10) == 0) {
        return parse_initiator(arg);
    }
    if (sscanf(arg, "stream=%d:%" SCNu64 ":%" SCNu64, &node, &rd, &wr) == 3) {
        if (node < 0 || node >= MAX_NODES || rd > PPM || wr > PPM) {
            return false;
        }
        stream_ppm[node][0] = rd;
        stream_ppm[node][1] = wr;
        return true;
    }
    if (strncmp(arg, "cache_kib=", 10) == 0) {
        cache_kib = strtoull(arg + 10, &end, 10);
        return *end == 0 && cache_kib > 0;
    }
    if (strncmp(arg, "line=", 5) == 0) {
        unsigned long line = strtoul(arg + 5, &end, 10);
        line_shift = __builtin_ctzl(line ? line : 1);
        return *end == 0 && line >= 8 && (line & (line - 1)) == 0;
    }
    if (strncmp(arg, "ways=", 5) == 0) {
        ways = strtoul(arg + 5, &end, 10);
        return *end == 0 && ways > 0 && ways <= 64;
    }
    if (sscanf(arg, "speed=%d:%" SCNu64, &node, &rd) == 2) {
        return set_speed(node, rd, true);
    }
    if (strcmp(arg, "threads=multi") == 0 || strcmp(arg, "threads=single") == 0) {
        multi = arg[8] == 'm';
        armed = !multi;
        return true;
    }
    if (strcmp(arg, "mem=0") == 0 || strcmp(arg, "mem=1") == 0) {
        mem_cbs = arg[4] == '1';
        return true;
    }
    if (strncmp(arg, "pace_batch_ns=", 14) == 0) {
        pace_batch_ns = strtoull(arg + 14, &end, 10);
        return *end == 0;
    }
    if (strncmp(arg, "batch_ns=", 9) == 0) {
        batch_ns = strtoull(arg + 9, &end, 10);
        return *end == 0;
    }
    if (strncmp(arg, "credit_cap_ns=", 14) == 0) {
        credit_cap_ns = strtoull(arg + 14, &end, 10);
        return *end == 0;
    }
    if (strncmp(arg, "sock=", 5) == 0 && strlen(arg + 5) < sizeof(sock_path)) {
        strcpy(sock_path, arg + 5);
        return true;
    }
    return false;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    if (info->version.min > qemu_plugin_version || info->version.cur < qemu_plugin_version) {
        say("llamas-latency: built for plugin API %s, which this QEMU does not accept\n", "2");
        return -1;
    }
    if (!info->system_emulation) {
        say("llamas-latency: needs system emulation (%s)\n", info->target_name);
        return -1;
    }
    for (int n = 0; n < MAX_NODES; n++) {
        stream_ppm[n][0] = stream_ppm[n][1] = PPM;
    }
    for (int i = 0; i < argc; i++) {
        if (!parse_arg(argv[i])) {
            say("llamas-latency: bad argument '%s'\n", argv[i]);
            return -1;
        }
    }
    if (per_initiator && !multi) {
        say("llamas-latency: initiator= and delay=NODE:READ:WRITE@INIT need threads=multi: under one TCG "
            "thread a callback gets the vCPU that translated the block, not the one running it%s\n", "");
        return -1;
    }
    n_sets = (cache_kib * 1024 >> line_shift) / ways;
    if (n_sets == 0) {
        say("llamas-latency: cache too small for its ways (%s)\n", "cache_kib, line, ways");
        return -1;
    }
    set_mask = (n_sets & (n_sets - 1)) == 0 ? n_sets - 1 : 0;
    tags = calloc(n_sets * ways, sizeof(*tags));
    if (!tags) {
        say("llamas-latency: no memory for the cache model (%s)\n", "calloc");
        return -1;
    }
    for (int i = 0; i < SET_LOCKS; i++) {
        pthread_spin_init(&set_locks[i], PTHREAD_PROCESS_PRIVATE);
    }
    if (pacing && info->version.cur < 3) {
        say("llamas-latency: pacing cores needs plugin API 3 (QEMU 9.1 or newer)%s\n", "");
        return -1;
    }
    if (pacing) {
        pending = (qemu_plugin_u64){ qemu_plugin_scoreboard_new(sizeof(uint64_t)), 0 };
    }
    if (sock_path[0] && !start_control()) {
        say("llamas-latency: cannot listen on control socket %s\n", sock_path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    qemu_plugin_register_vcpu_idle_cb(id, on_idle);

    return 0;
}
