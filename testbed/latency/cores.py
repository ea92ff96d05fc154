"""Felt core speeds: pace the slow vCPUs until the guest measures the topology's speeds.

The plugin makes a vCPU of speed s sleep (1/s - 1) ns per ns of CPU time it
runs, but a thread that sleeps often runs slower when it wakes (cold caches,
the wake-up itself), so the guest feels less than s.  As with memory latency
the cure is a measurement: a register-only loop on the fastest vCPU and one on
each slower group's first vCPU, side by side, the group's pace scaled by
target over felt, a few rounds.  The paces are cached per host, QEMU, image,
plugin, set of speeds and whether the memory callbacks run, and set through the
control socket at boot.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

from ..files import write_atomic
from ..image import cache_root
from . import calibrate
from .emulated import EmulatedMachine

REPEATS = 3
ROUNDS = 3
# About two seconds on a full-speed vCPU here.  The host's noise is fast: at a fixed pace, eight side-by-side
# ratios of half-second loops spread over 0.30-0.48, of two-second loops over 0.33-0.41.
SPIN_MILLIONS = 400


def measure(machine: EmulatedMachine, repeats: int = REPEATS, cpus: list[int] | None = None) -> dict[int, float]:
    """{vCPU: speed relative to the fastest vCPU}: each vCPU (of `cpus`, default all) side by side with a
    fastest one, median of repeats."""
    speeds = machine.topology.cpu_speeds()
    reference = machine.topology.fastest_cpus()[0]
    top = speeds[reference]
    relative = {reference: 1.0}
    for cpu in (c for c in sorted(cpus or speeds) if c != reference):
        # The slower loop gets fewer steps, so both run for about the same time.
        steps = {reference: SPIN_MILLIONS, cpu: max(1, round(SPIN_MILLIONS * speeds[cpu] / top))}
        ratios = []
        for _ in range(repeats):
            ns = machine.run_spins(steps)
            ratios.append(ns[reference] / ns[cpu])
        relative[cpu] = statistics.median(ratios)
    return relative


def _key(machine: EmulatedMachine) -> str:
    speeds = json.dumps(sorted(machine.topology.cpu_speeds().items()))
    base = calibrate.machine_key(machine)
    # With the memory callbacks on, the same pace feels different (hybrid-tiered's fit, 717 for 0.4,
    # made hybrid-cores' pacing-only vCPUs feel 0.63 and 0.70): one fit per kind of machine.
    return hashlib.sha256(f"{base}\n{speeds}\nmemory={machine.feels_memory}".encode()).hexdigest()[:16]


def _path(key: str) -> Path:
    return cache_root() / "latency" / "pacing" / f"{key}.json"


def fit(machine: EmulatedMachine) -> dict[int, int]:
    """{vCPU: permille} that make each slow group feel its topology speed relative to the fastest vCPUs."""
    speeds = machine.topology.cpu_speeds()
    top = max(speeds.values())
    groups = {s: [c for c in speeds if speeds[c] == s] for s in set(speeds.values()) if s < top}
    pace = {cpu: round(1000 * s / top) for s, cpus in groups.items() for cpu in cpus}
    for _ in range(ROUNDS):
        machine.set_paces(pace)
        # A median, not one sample: the last round's reading becomes the pace, and one loop that a shared
        # host stalled for a moment once made CI's slow cores feel 0.54 for 0.4.
        felt = measure(machine, cpus=[cpus[0] for cpus in groups.values()])
        for s, cpus in groups.items():
            scaled = min(1000, max(1, round(pace[cpus[0]] * (s / top) / felt[cpus[0]])))
            pace.update(dict.fromkeys(cpus, scaled))
    machine.set_paces(pace)
    return pace


def ensure(machine: EmulatedMachine, force: bool = False) -> dict[int, int]:
    """Set the cached paces of this machine's slow vCPUs, fitting them first if there are none."""
    path = _path(_key(machine))
    if path.exists() and not force:
        pace = {int(cpu): int(p) for cpu, p in json.loads(path.read_text()).items()}
        machine.set_paces(pace)
        return pace
    pace = fit(machine)
    write_atomic(path, json.dumps({str(c): p for c, p in pace.items()}) + "\n")
    return pace
