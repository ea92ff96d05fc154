"""What the kernel did during a run: /proc/vmstat's NUMA and migration counters, the IPIs they cost,
and its policy threads' CPU time.

A reactive policy that did nothing and one that worked hard and lost look alike
in a throughput table; these deltas tell them apart (hint faults taken, pages
promoted and demoted, TLB shootdowns sent, kdamond's and kswapd's CPU seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ssh import GuestShell

# /proc/vmstat counters worth a delta: NUMA balancing's faults and migrations, tiering's promotions and
# demotions, whether kswapd ran at all (pageoutrun: its balancing passes), and what reclaim took and
# whether it came back: scans and steals by kswapd or a direct reclaim (and of anon or file pages), the
# stalls of the latter, refaults of what was taken, and major faults. A first-touch run on dram-nvm
# once had kswapd steal 660,694 pages in a read-only timed phase (15 s of kswapd, the whole run 11 %
# slower than its repeat) with no counter kept to say which pages or whether they came back.
VMSTAT_PREFIXES = ("numa_", "pgpromote_", "pgdemote_", "pgmigrate_", "thp_migration_", "pageoutrun",
                   "pgscan_", "pgsteal_", "allocstall_", "workingset_refault_", "pgmajfault")
# Kernel threads whose CPU time is the policy's cost: DAMON's and the reclaim (demotion) threads.
THREADS = ("kdamond", "kswapd")
# /proc/interrupts rows kept, summed over CPUs: every page migration or unmap flushes other CPUs' TLBs.
IPIS = {"TLB:": "irq_tlb_shootdowns", "CAL:": "irq_function_calls"}
USER_HZ = 100  # /proc/PID/stat's clock ticks on x86 Linux (the ABI's USER_HZ)
# Each node's heading and whether kswapd has given up on it; `parse` reads this alone too.
ZONEINFO = "grep -E '^Node|node_unreclaimable' /proc/zoneinfo"
# Each node's transparent huge pages mapped by processes: the LRU ages a huge page as one folio, so where
# first touch left them decides what reclaim (and so demotion) sees as one hot unit (README, "Fair baselines").
NODE_HUGE = "grep -h AnonHugePages /sys/devices/system/node/node*/meminfo"
_SNAPSHOT = ("cat /proc/vmstat; grep -E '^ *(TLB|CAL):' /proc/interrupts; "
             f"{ZONEINFO}; {NODE_HUGE}; "
             "for d in /proc/[0-9]*; do read c < $d/stat 2>/dev/null || continue; "
             "case $c in *'(kdamond'*|*'(kswapd'*) echo \"thread $c\";; esac; done")


@dataclass(frozen=True)
class Snapshot:
    vmstat: dict[str, int]                   # the kept vmstat counters, and the IPI rows as irq_*
    thread_ticks: dict[str, dict[int, int]]  # per thread kind, per pid: utime + stime, in USER_HZ ticks
    # nodes kswapd has given up on (/proc/zoneinfo's node_unreclaimable: 16 passes that reclaimed
    # nothing); it then sleeps through every wake-up until a direct reclaim succeeds there
    hopeless: tuple[int, ...] = ()
    huge_kib: dict[int, int] = field(default_factory=dict)  # per node: AnonHugePages, kB


def parse(text: str) -> Snapshot:
    """A snapshot from `_SNAPSHOT`'s output: vmstat lines, then `thread <stat line>` per policy thread."""
    vmstat, ticks, hopeless, huge, node = {}, {kind: {} for kind in THREADS}, set(), {}, None
    for line in text.splitlines():
        if line.startswith("Node ") and "AnonHugePages:" in line:  # "Node 0 AnonHugePages:  4096 kB"
            huge[int(line.split()[1])] = int(line.split()[3])
        elif line.startswith("Node "):
            node = int(line.split()[1].rstrip(","))
        elif line.strip().startswith("node_unreclaimable:") and node is not None:
            if int(line.split(":")[1]):
                hopeless.add(node)
        elif line.startswith("thread "):
            comm = line[line.index("(") + 1:line.rindex(")")]
            fields = line[line.rindex(")") + 2:].split()  # from field 3 (state) on
            kind = next(k for k in THREADS if comm.startswith(k))
            ticks[kind][int(line.split()[1])] = int(fields[11]) + int(fields[12])  # utime, stime: fields 14, 15
        elif line.startswith(VMSTAT_PREFIXES):
            name, value = line.split()
            vmstat[name] = int(value)
        elif line.split(maxsplit=1)[0] in IPIS:
            row, *cells = line.split()
            vmstat[IPIS[row]] = sum(int(c) for c in cells if c.isdigit())
    return Snapshot(vmstat, ticks, tuple(sorted(hopeless)), huge)


def snapshot(shell: GuestShell) -> Snapshot:
    """The counters now (one guest command, no Python: cheap beside a running workload)."""
    return parse(shell.run(_SNAPSHOT).stdout)


def delta(before: Snapshot, after: Snapshot) -> tuple[dict[str, int], dict[str, float]]:
    """(vmstat deltas, CPU seconds per thread kind) between two snapshots.

    A thread's time is counted by pid: the agent's daemon starts a kdamond for each round's DAMON
    window and stops it, so a total over whatever threads were alive went negative when the one of
    `before` had run longer than the one of `after` (-0.06 s in a write-aware run). The time of a
    thread that ended in between is not in /proc any more: these are lower bounds."""
    vmstat = {k: after.vmstat[k] - before.vmstat.get(k, 0) for k in sorted(after.vmstat)}
    cpu = {k: sum(t - before.thread_ticks[k].get(pid, 0) for pid, t in after.thread_ticks[k].items()) / USER_HZ
           for k in THREADS}
    return vmstat, cpu
