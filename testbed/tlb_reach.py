"""TCG's software TLB held to a hardware TLB's reach, so that the guest's accessed bits see accesses.

DAMON, MGLRU's aging and reclaim learn that a page was used from its PTE's accessed
bit: they clear it and look again later.  On x86 the kernel clears it without a TLB
flush (`ptep_clear_flush_young`: a hardware TLB holds a few thousand entries, so a page
in use is walked again, and its bit set again, within microseconds).  QEMU's software
TLB grows to hold a whole working set and sets the bit only when it walks the page
tables, so under TCG a page it holds looks unused however often it is touched, until
that vCPU's TLB is next flushed: the hottest pages look coldest.  Measured with
`benchmarks/accessed_bits.py` (README, "Accessed bits"): DAMON saw 0.0-1.0 accesses of 20
on a buffer looped over 177-257 times a second, and 6.6-16.8 when the loop ran slowly
enough to miss the TLB.

The guest program `tlb-reach` wakes a thread on every CPU each PERIOD_MS; the switch to
its address space loads CR3, on which TCG flushes the vCPU's TLB.  A translation then
lives at most PERIOD_MS of host time.  Each flush costs the page walks of the pages
touched next, a cost per host second, so on an emulated-latency machine, where a slow
node's access takes longer, it costs the slow node more per access (at 10 ms a chase on
dram-nvm's NVM felt 24-43 % slower).  An evaluation therefore counts the
period on the modelled machine's clock, times the time scale k on the host, like the
DAMON and NUMA balancing clocks it serves, and starts it after the calibration
(`runner._tlb_reach`; at 10 modelled ms, 137 host ms at k = 13.7, NVM's stores felt 12,299
and 12,407 ns against 11,561 and 12,257 without it, its loads no slower).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import guest_binary
from .ssh import GuestShell

SOURCE = Path(__file__).resolve().with_name("tlb_reach.c")
GUEST_PATH = "/usr/local/sbin/tlb-reach"
NAME = "tlb-reach"
PERIOD_MS = 10
PROTECTED_FILE = "/etc/llamas-agent/protected"  # the agent refuses hints that would slow what it names

LOOP_SOURCE = SOURCE.parent.parent / "benchmarks" / "accessed_bits.c"
LOOP, COUNTER = "/tmp/accessed_bits", "/tmp/accessed_bits.passes"
SAMPLES, SAMPLE_S = 20, 0.005  # the agent's DAMON attributes: 5 ms samples, 100 ms aggregations
# Watches one process with the agent's DAMON code; prints the loop's speed and the buffer's nr_accesses.
WATCH = """
import json, sys, time
sys.path.insert(0, "/opt/llamas-agent")
from llamas_agent import damon
from llamas_agent.sysfs import Tree
pid, lo, hi, counter = int(sys.argv[1]), int(sys.argv[2], 0), int(sys.argv[3], 0), sys.argv[4]
def passes():
    return int(open(counter).read().split()[0])
p0, t0 = passes(), time.monotonic()
regions = damon.monitor(Tree("/"), [pid], 3.0, max_regions=10**6)[str(pid)]
rate = (passes() - p0) / (time.monotonic() - t0)
seen = sum(r["nr_accesses"] * max(0, min(hi, r["end"]) - max(lo, r["start"])) for r in regions) / (hi - lo)
print(json.dumps({"passes_per_s": rate, "nr_accesses": seen}))
"""


@dataclass(frozen=True)
class Seen:
    """One DAMON look at a buffer looped over: the loop's speed, and what DAMON saw of it."""

    passes_per_s: float
    nr_accesses: float  # per aggregation, of SAMPLES

    @property
    def floor(self) -> float:
        """The least a hardware-like accessed bit gives: SAMPLES x the chance a pass falls in one sample."""
        return SAMPLES * min(1.0, SAMPLE_S * self.passes_per_s)

    def reachable(self, period_ms: int) -> float:
        """What tlb-reach every `period_ms` can give: a sample sees a page only if a flush fell in it.

        The kernel clears the bit when a sample starts; TCG sets it again at the first walk after
        the next flush, so a 5 ms sample sees a flush every 10 ms about half the time (README:
        8.5-11.4 of 20 seen at 10 ms, against 0.0-3.4 without tlb-reach).
        """
        return self.floor * min(1.0, SAMPLE_S * 1000 / period_ms)


class TlbReachError(RuntimeError):
    """The guest's TLB bound did not start."""


def bound(shell: GuestShell, period_ms: int = PERIOD_MS) -> None:
    """Start `tlb-reach` in the guest (once per boot), protected from hints that would slow it."""
    guest_binary.install(shell, SOURCE, GUEST_PATH)
    result = shell.run(
        f"mkdir -p {Path(PROTECTED_FILE).parent} && (grep -qx {NAME} {PROTECTED_FILE} 2>/dev/null || "
        f"echo {NAME} >> {PROTECTED_FILE}) && pkill -x {NAME}; "
        f"setsid {GUEST_PATH} {period_ms * 1000} < /dev/null > /dev/null 2>&1 & sleep 0.2; pgrep -x {NAME}",
        check=False)
    if not result.stdout.strip():
        raise TlbReachError(f"{GUEST_PATH} did not start in the guest: {result.stderr.strip() or 'no process'}")


def stop(shell: GuestShell) -> None:
    """Stop `tlb-reach` in the guest, if it runs."""
    shell.run(f"pkill -x {NAME}; while pgrep -x {NAME} > /dev/null; do sleep 0.1; done", check=False)


def damon_view(shell: GuestShell, mib: int = 64, rounds: int = 3) -> list[Seen]:
    """Loop over a `mib` MiB buffer on node 0 (one byte per page) and ask DAMON, `rounds` times, what it saw."""
    guest_binary.install(shell, LOOP_SOURCE, LOOP)
    start = shell.run(f"rm -f /tmp/ab.out {COUNTER}; numactl --membind=0 --cpunodebind=0 {LOOP} {mib} {COUNTER} "
                      f"> /tmp/ab.out 2>&1 & echo $!; until [ -s {COUNTER} ]; do sleep 0.2; done; cat /tmp/ab.out",
                      timeout=120).stdout.split()
    pid, base = start[0], int(start[1], 16)
    try:
        return [Seen(**json.loads(shell.run(f"python3 -c {shlex.quote(WATCH)} {pid} {base} "
                                            f"{base + (mib << 20)} {COUNTER}", timeout=120).stdout))
                for _ in range(rounds)]
    finally:
        shell.run(f"kill {pid}", check=False)


def key(period_ms: int) -> str:
    """What the emulator's own speed depends on here: the program and its period (for calibration keys)."""
    return f"tlb-reach {guest_binary.digest(SOURCE)} every {period_ms} ms"
