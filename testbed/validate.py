"""Comparing what a topology file asks for with what the guest kernel sees.

`compare()` is pure: a Topology and a GuestMachine in, a list of checks out,
each with the expected and observed value and whether it holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

from .guest_view import GuestMachine, GuestNode
from .topology import Node, Topology

# The kernel keeps part of every node for itself (memmap, reserved ranges,
# and the kernel image on node 0); memory is checked within this slack.
MEMORY_SLACK_MIB = 192
MEMORY_SLACK_FRACTION = 0.15
# A core's measured speed, relative to the fastest, may differ from the file's by this fraction.
SPEED_TOLERANCE = 0.10
# A node's felt latency relative to the fastest node's may differ from the file's ratio by this fraction.
LATENCY_TOLERANCE = 0.10


@dataclass(frozen=True)
class Check:
    name: str
    expected: Any
    observed: Any
    ok: bool


@dataclass
class Report:
    """The result of `testbed validate`, as printed with --json."""

    topology: str
    accel: str
    boot_seconds: float
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_json(self) -> dict:
        return {"topology": self.topology, "ok": self.ok, "accel": self.accel,
                "boot_seconds": round(self.boot_seconds, 2), "checks": [asdict(c) for c in self.checks]}


def _memory_check(node: Node, seen: GuestNode) -> Check:
    slack = max(MEMORY_SLACK_MIB, int(node.size_mib * MEMORY_SLACK_FRACTION))
    observed = seen.mem_total_mib
    return Check(f"node{node.id}.memory_mib", node.size_mib, observed,
                 node.size_mib - slack <= observed <= node.size_mib)


def _hmat_checks(topo: Topology, node: Node, seen: GuestNode) -> list[Check]:
    entry = topo.best_hmat(node)
    if entry is None:
        return []
    access = seen.access0
    pairs = [("read_latency_ns", entry.read_latency_ns, access and access.read_latency),
             ("write_latency_ns", entry.write_latency_ns, access and access.write_latency),
             ("read_bandwidth_mbps", entry.read_bandwidth_mbps, access and access.read_bandwidth),
             ("write_bandwidth_mbps", entry.write_bandwidth_mbps, access and access.write_bandwidth)]
    checks = [Check(f"node{node.id}.hmat.{name}", want, got, want == got) for name, want, got in pairs]
    initiator = topo.initiator_of(node)
    got_initiators = access.initiators if access else None
    checks.append(Check(f"node{node.id}.hmat.initiators", [initiator], got_initiators, got_initiators == [initiator]))
    return checks


def _tier_checks(topo: Topology, seen: GuestMachine) -> list[Check]:
    """Ranks in the file must order the kernel's tiers the same way (ids themselves are the kernel's)."""
    ranked = [n for n in topo.nodes if n.tier is not None]
    tier = {n.id: (seen.node(n.id).memory_tier if seen.node(n.id) else None) for n in ranked}
    checks = []
    for node in ranked:
        consistent = tier[node.id] is not None
        for a, b in combinations(ranked, 2):
            if node.id not in (a.id, b.id) or tier[a.id] is None or tier[b.id] is None:
                continue
            same_order = (a.tier > b.tier) - (a.tier < b.tier) == (tier[a.id] > tier[b.id]) - (tier[a.id] < tier[b.id])
            consistent &= same_order
        checks.append(Check(f"node{node.id}.memory_tier", f"rank {node.tier}", tier[node.id], consistent))
    return checks


def _cxl_check(node: Node, seen: GuestMachine) -> Check:
    dax = [d for d in seen.cxl.dax if d.target_node == node.id and d.system_ram]
    regions = [r for r in seen.cxl.regions if r.committed and r.size == node.size_mib << 20]
    observed = (f"{len(regions)} committed region(s) of {node.size_mib} MiB, "
                f"{len(dax)} dax device(s) online as system RAM on node {node.id}")
    return Check(f"node{node.id}.cxl_region", f"1 committed ram region of {node.size_mib} MiB on node {node.id}",
                 observed, len(dax) == 1 and len(regions) >= 1)


def compare(topo: Topology, seen: GuestMachine) -> list[Check]:
    """Every check of the guest's view against the topology, in a stable order."""
    checks = [Check("nodes", [n.id for n in topo.nodes], [n.id for n in seen.nodes],
                    [n.id for n in topo.nodes] == [n.id for n in seen.nodes])]
    for node in topo.nodes:
        got = seen.node(node.id)
        if got is None:
            checks.append(Check(f"node{node.id}.present", True, False, False))
            continue
        expected_distances = [topo.distance(node.id, other.id) for other in topo.nodes]
        checks += [
            Check(f"node{node.id}.cpus", node.cpus, got.cpus, node.cpus == got.cpus),
            _memory_check(node, got),
            Check(f"node{node.id}.distances", expected_distances, got.distances, expected_distances == got.distances),
            *_hmat_checks(topo, node, got),
        ]
        if node.is_cxl_device:
            checks.append(_cxl_check(node, seen))
    checks += _tier_checks(topo, seen)
    return checks


def speed_checks(topo: Topology, relative: dict[int, float]) -> list[Check]:
    """Per vCPU: the speed the guest measured (relative to the fastest vCPU) against the topology's."""
    speeds = topo.cpu_speeds()
    top = max(speeds.values())
    checks = []
    for cpu, speed in speeds.items():
        expected = round(speed / top, 3)
        observed = relative.get(cpu)
        ok = observed is not None and abs(observed / expected - 1) <= SPEED_TOLERANCE
        checks.append(Check(f"cpu{cpu}.speed", expected, None if observed is None else round(observed, 3), ok))
    return checks


def latency_checks(ratios: dict[int, dict[str, tuple[float, float]]]) -> list[Check]:
    """Per node and kind: the felt latency relative to the fastest node's against the file's ratio.

    `ratios` is `ProbeResult.ratios()`: {node: {"read"|"write": (target ratio, measured ratio)}}.
    """
    checks = []
    for node, kinds in sorted(ratios.items()):
        for kind, (target, measured) in kinds.items():
            ok = abs(measured / target - 1) <= LATENCY_TOLERANCE
            checks.append(Check(f"node{node}.felt_{kind}_ratio", round(target, 3), round(measured, 3), ok))
    return checks
