"""What a booted emulated machine feels, fitted once per host and cached: its cores' speeds (pacing, on a
machine whose cores differ) and its nodes' latencies (delays calibrated and trimmed, where the machine runs
the memory callbacks). The evaluation runner and the MCP machine both start from here, so a topology feels
the same under either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..files import locked
from ..image import cache_root
from . import calibrate, cores, trim
from .emulated import Delays, EmulatedMachine, key_text


@dataclass
class Felt:
    """The delays to set for a timed phase, k (felt / target; None where memory is not felt) and what was
    fitted, as the manifest records it."""

    delays: Delays
    k: float | None = None
    record: dict = field(default_factory=dict)


def lock_path() -> Path:
    """One fit at a time per host: cluster workers and MCP sessions on one host share its cache."""
    return cache_root() / "latency" / "calibration.lock"


def fit(machine: EmulatedMachine, memory: bool = True, min_k: float = 0.0) -> Felt:
    """Pace the cores (where they differ) and, if `memory` and the machine runs the memory callbacks,
    the per-node (or per-initiator-and-node) delays, with k at least `min_k`; each fit is cached per
    host and image (and k floor)."""
    topo = machine.topology
    felt = Felt({n.id: (0, 0) for n in topo.nodes})
    if machine.paces_cores:  # first: the calibration then tells the paced cores what a miss costs the emulator
        with locked(lock_path()):
            pace = cores.ensure(machine)
        felt.record.update({"core_speeds": {str(c): s for c, s in topo.cpu_speeds().items()},
                            "pace_permille": {str(c): p for c, p in pace.items()}})
    # a paced machine runs the memory callbacks only under a TCG thread per vCPU
    if not memory or not machine.feels_memory:
        return felt
    targets = calibrate.machine_targets(machine)  # per (initiator, node) where the machine feels them apart
    with locked(lock_path()):
        cal = replace(calibrate.ensure(machine), min_scale=min_k)  # the trim's cache key holds the floor
        trimmed = trim.ensure(machine, cal, targets)
    felt.delays, felt.k = trimmed.delays, cal.scale(targets)
    felt.record.update({
        "cache": asdict(machine.cache), "calibration": asdict(cal),
        "targets_ns": {key_text(n): list(t) for n, t in targets.items()}, "trim": trimmed.to_json(),
        "delays_ns": {key_text(n): list(d) for n, d in trimmed.delays.items()}, "k": felt.k})
    return felt
