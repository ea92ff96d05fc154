"""Calibration: scale the injected delays so the guest feels the topology's latency ratios.

TCG itself costs a few hundred ns per random access.  In the guest one miss
on a node whose misses owe d ns takes about

    m = base + slope * d

We measure `base` and `slope` once per host, QEMU, image, plugin and cache
model (a pointer chase for reads, a store loop for writes, on the fastest
node) and cache them.  The fit uses two delays in the range the plugin then
works in, not d = 0: on a shared host TCG's own speed swings with the load,
but a vCPU thread that sleeps often is scheduled promptly when it wakes, so
figures with delays of some hundreds of ns are steady while those at d = 0
are not.  The delays then make every node feel k times its target latency
t:  d = (k * t - base) / slope, with one k for reads and writes (so a node's
write/read ratio holds too), chosen so that even the fastest node owes at
least MIN_DELAY_NS and stays in the steady range.

A machine whose nodes are slower from one socket than from the other (two-socket)
has a target per (initiator, node) under a TCG thread per vCPU (`machine_targets`);
k stays one number, set by the fastest figure (a local one), and every other key
works as a node does.
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import tlb_reach
from ..files import write_atomic
from ..image import cache_root
from ..topology import Topology
from . import build
from .emulated import PROBE_SOURCE, CacheModel, DelayKey, Delays, EmulatedMachine, Route

# The two delays of the fit; the smaller one is also the least any node owes.
MIN_DELAY_NS, HIGH_DELAY_NS = 500, 2000
REPEATS = 3


class CalibrationError(RuntimeError):
    """The measurements cannot give a usable calibration."""


Targets = dict[DelayKey, tuple[int, int]]  # node, or (initiator, node) -> (read ns, write ns) to feel


@dataclass(frozen=True)
class Calibration:
    """TCG's own cost per access (ns) and how much of an injected ns the guest feels."""

    base_read_ns: float
    base_write_ns: float
    slope_read: float
    slope_write: float
    key: str
    min_scale: float = 0.0  # a floor on k that an evaluation asks for (never cached: 0 here)

    def scale(self, targets: Targets) -> float:
        """k: felt ns per target ns, the least that makes every node owe at least MIN_DELAY_NS, or
        min_scale if that is more."""
        fast_read = min(r for r, _ in targets.values())
        fast_write = min(w for _, w in targets.values())
        return max(self.min_scale, (self.base_read_ns + self.slope_read * MIN_DELAY_NS) / fast_read,
                   (self.base_write_ns + self.slope_write * MIN_DELAY_NS) / fast_write)

    def delays(self, targets: Targets) -> Delays:
        """Per-miss delays (ns) for target latencies {node or (initiator, node): (read ns, write ns)}."""
        k = self.scale(targets)
        return {node: (round((k * r - self.base_read_ns) / self.slope_read),
                       round((k * w - self.base_write_ns) / self.slope_write))
                for node, (r, w) in targets.items()}


def targets(topology: Topology) -> dict[int, tuple[int, int]]:
    """{node: (read ns, write ns)} from each node's HMAT entry as seen from its nearest CPUs."""
    out = {}
    for node in topology.nodes:
        entry = topology.best_hmat(node)
        if entry is not None:
            out[node.id] = (entry.read_latency_ns, entry.write_latency_ns)
    if not out:
        raise CalibrationError(f"{topology.name}: no HMAT latencies, so no target for the emulated mode")
    return out


def initiator_targets(topology: Topology) -> dict[Route, tuple[int, int]]:
    """{(initiator, node): (read ns, write ns)} for every CPU node and every node with a target: the file's
    entry for that pair, or the node's nearest initiator's where the file gives none."""
    nodes = targets(topology)  # raises where the file has no latencies at all
    out = {}
    for initiator in (n.id for n in topology.nodes if n.cpus):
        for node in (n for n in topology.nodes if n.id in nodes):
            entry = topology.hmat_from(initiator, node)
            out[(initiator, node.id)] = (entry.read_latency_ns, entry.write_latency_ns)
    return out


def machine_targets(machine: EmulatedMachine) -> Targets:
    """Per (initiator, node) where the machine feels initiators apart (`EmulatedMachine.per_initiator`),
    else per node, exactly as before (the same trim cache)."""
    if machine.per_initiator:
        return initiator_targets(machine.topology)
    return targets(machine.topology)


def reference_node(topology: Topology) -> int:
    """The node with the lowest target read latency: ratios are measured against it."""
    t = targets(topology)
    return min(t, key=lambda n: (t[n][0], n))


def _host_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def key(image_digest: str, cache: CacheModel, tlb_reach_ms: int = 0, qemu: str = "qemu-system-x86_64",
        mttcg: bool = False) -> str:
    """Everything the emulator's own speed depends on (tlb-reach's flushes too, when it runs, and
    a TCG thread per vCPU: locked cache model, each thread's own sleeps)."""
    parts = [_host_model(), platform.machine(), ".".join(map(str, build.qemu_version(qemu))), image_digest,
             build.source_digest(), hashlib.sha256(PROBE_SOURCE.read_bytes()).hexdigest(), repr(cache)]
    if tlb_reach_ms:
        parts.append(tlb_reach.key(tlb_reach_ms))
    if mttcg:
        parts.append("tcg thread per vCPU")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def machine_key(machine: EmulatedMachine) -> str:
    """`key` for a booted machine."""
    return key(machine.image.digest, machine.cache, machine.tlb_reach_ms, mttcg=machine.mttcg)


def _path(cal_key: str) -> Path:
    return cache_root() / "latency" / "calibration" / f"{cal_key}.json"


def load(cal_key: str) -> Calibration | None:
    path = _path(cal_key)
    if not path.exists():
        return None
    return Calibration(**json.loads(path.read_text()))


def save(cal: Calibration) -> Path:
    # atomic: a concurrent run reads the old or the new calibration, never half
    return write_atomic(_path(cal.key), json.dumps(asdict(cal), indent=2) + "\n")


def median_probe(machine: EmulatedMachine, mode: str, node: int, repeats: int = REPEATS) -> float:
    """Median of several runs: the host is shared and noisy."""
    return statistics.median(machine.run_probe(mode, node) for _ in range(repeats))


def felt(machine: EmulatedMachine, nodes: list[DelayKey],
         repeats: int = REPEATS) -> dict[DelayKey, tuple[float, float]]:
    """Median chase and store ns per node (or (initiator, node): from that initiator's CPUs), the nodes' runs
    interleaved so that all sample the same moments.

    TCG's own cost per access is not steady on a shared host: here a chase at zero delay took
    ~520 or ~1000 ns, flipping between the two from one run to the next within a boot.  Nodes
    measured one after the other can land on different levels, and their ratio then errs by the
    swing (a CI run measured node 0 on the low level and node 1 on the high one: ratio 4.42 for
    3.05).  So each repeat runs every node back to back, in reverse order every other repeat.
    """
    samples: dict[int, tuple[list[float], list[float]]] = {n: ([], []) for n in nodes}
    for r in range(repeats):
        order = nodes if r % 2 == 0 else nodes[::-1]
        for i, mode in enumerate(("chase", "store")):
            for node in order:
                samples[node][i].append(machine.run_probe(mode, node))
    return {n: (statistics.median(chase), statistics.median(store)) for n, (chase, store) in samples.items()}


def fit(low: float, high: float, low_delay: int = MIN_DELAY_NS, high_delay: int = HIGH_DELAY_NS) -> tuple[float, float]:
    """(base, slope) of the line through (low_delay, low) and (high_delay, high)."""
    slope = (high - low) / (high_delay - low_delay)
    return low - slope * low_delay, slope


def from_measurements(read: tuple[float, float], write: tuple[float, float], cal_key: str) -> Calibration:
    """A calibration from (ns at MIN_DELAY_NS, ns at HIGH_DELAY_NS) of reads and writes; raise if implausible."""
    (base_r, slope_r), (base_w, slope_w) = fit(*read), fit(*write)
    if not (0.5 < slope_r < 3 and 0.5 < slope_w < 3 and base_r > 0 and base_w > 0):
        raise CalibrationError(
            f"implausible calibration (host too noisy?): reads {read[0]:.0f}/{read[1]:.0f} ns and writes "
            f"{write[0]:.0f}/{write[1]:.0f} ns at {MIN_DELAY_NS}/{HIGH_DELAY_NS} ns injected delay")
    return Calibration(base_r, base_w, slope_r, slope_w, cal_key)


def measure(machine: EmulatedMachine, node: int) -> Calibration:
    """Base cost and slope on `node`, reads and writes; leaves the other nodes' delays at zero."""
    zero = {n.id: (0, 0) for n in machine.topology.nodes}
    figures = {}
    for delay in (MIN_DELAY_NS, HIGH_DELAY_NS):
        machine.set_delays({**zero, node: (delay, delay)})
        figures[delay] = (median_probe(machine, "chase", node), median_probe(machine, "store", node))
    machine.set_delays(zero)
    low, high = figures[MIN_DELAY_NS], figures[HIGH_DELAY_NS]
    cal_key = machine_key(machine)
    return from_measurements((low[0], high[0]), (low[1], high[1]), cal_key)


def ensure(machine: EmulatedMachine, force: bool = False) -> Calibration:
    """The cached calibration for this host and image, measuring it in `machine` if missing; a machine with
    paced cores is told the emulator's cost of a miss from it."""
    if not machine.feels_memory:
        raise CalibrationError(f"{machine.topology.name} has cores of different speed: the plugin paces its "
                               "vCPUs (a TCG thread each) and emulates memory latency there only with mttcg")
    cal_key = machine_key(machine)
    cal = None if force else load(cal_key)
    if cal is None:
        cal = measure(machine, reference_node(machine.topology))
        save(cal)
    if machine.paces_cores:
        # A slow core's misses wait as long as a fast core's: its pace forgives the emulator's own cost
        # of each miss, which is this base (plugin.c).
        machine.control.set_miss_cost(cal.base_read_ns, cal.base_write_ns)
    return cal
