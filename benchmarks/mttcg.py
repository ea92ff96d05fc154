"""Felt latency under multi-threaded TCG: boots that survive, a second vCPU's speed-up, the ratio errors.

Usage: python benchmarks/mttcg.py [TOPOLOGY] [--boots N] [--runs N]

QEMU 10.0 can abort in `iotlb_to_section` when the latency plugin looks an access up
under MTTCG while the memory map still changes (testbed/latency/plugin.c); the plugin
therefore arms after boot.  This benchmark boots TOPOLOGY (default dram-cxl: PCI and a
CXL window, the remaps that crashed) N times under MTTCG, armed, and in each runs a chase
on every node: a boot survives if QEMU is still up after it.  In the last boot it times
a chase on node 0 on one vCPU, then one on each of two vCPUs at once (the throughput
speed-up a second TCG thread gives a memory-bound, 2-thread loop; 2.0 is perfect), then
calibrates and trims under MTTCG (cached apart from one-thread figures) and prints the
felt ratio errors, as `testbed probe-latency --mttcg` does.  On a machine whose cores differ
(hybrid-tiered) the last boot also paces the slow vCPUs and prints each one's felt speed:
cores and memory felt in one machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import _vmhost  # benchmarks/_vmhost.py: each script runs as `python benchmarks/NAME.py`
from rich.console import Console

from testbed import topology
from testbed.latency import calibrate, cores, probe, trim
from testbed.latency.emulated import EmulatedMachine
from testbed.vm import BootError

LOOP_MIB = 32


def survives(machine: EmulatedMachine) -> bool:
    """A chase on every node, armed; True if QEMU is still running after it."""
    for node in calibrate.targets(machine.topology):
        machine.run_probe("chase", node, size_mib=8)
    return machine.vm.alive()


def speed_up(machine: EmulatedMachine, runs: int) -> tuple[float, float, float]:
    """(ns/load alone, ns/load two at once, throughput speed-up), medians of `runs`."""
    alone = statistics.median(machine.run_chases(0, [0], LOOP_MIB, 2)[0] for _ in range(runs))
    pair = statistics.median(statistics.mean(machine.run_chases(0, [0, 1], LOOP_MIB, 2).values())
                             for _ in range(runs))
    return alone, pair, 2 * alone / pair


def core_speeds(machine: EmulatedMachine) -> dict[int, float]:
    """{vCPU: felt speed relative to the fastest} on a machine with cores of different speed, else {}."""
    if not machine.paces_cores:
        return {}
    cores.ensure(machine)
    return cores.measure(machine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", default="dram-cxl")
    parser.add_argument("--boots", type=int, default=5, help="boots under MTTCG, armed after boot")
    parser.add_argument("--runs", type=int, default=3, help="loop runs per figure (median)")
    args = parser.parse_args()
    console = Console()
    img, _ = _vmhost.start(console, "tcg")
    topo = topology.load(topology.resolve(args.topology))
    targets = calibrate.targets(topo)
    survived, last = 0, None
    for boot in range(1, args.boots + 1):
        machine = EmulatedMachine(topo, img, mttcg=True)
        try:
            machine.__enter__()
        except BootError as exc:
            console.print(f"boot {boot}: lost ({str(exc).splitlines()[0]})")
            continue
        try:
            ok = survives(machine)
            survived += ok
            console.print(f"boot {boot}: {'survived' if ok else 'QEMU died'} ({machine.vm.boot_seconds:.1f} s to SSH)")
            if boot == args.boots and ok:
                speeds = core_speeds(machine)
                cal = calibrate.ensure(machine)
                trim.ensure(machine, cal, targets)
                last = (speed_up(machine, args.runs), probe.measure_nodes(machine, targets, calibrate.REPEATS), cal,
                        speeds)
        finally:
            machine.close()
    console.print(f"boots survived under MTTCG, armed after boot: {survived}/{args.boots}")
    if last is None:
        return 1
    (alone, pair, gain), result, cal, speeds = last
    for cpu, felt in speeds.items():
        console.print(f"vCPU {cpu}: speed {felt:.2f} (want {topo.cpu_speeds()[cpu]:.2f}), memory callbacks armed")
    console.print(f"chase on node 0, delays set: {alone:.0f} ns/load alone, {pair:.0f} ns/load two at once "
                  f"(vCPUs 0 and 1): throughput speed-up {gain:.2f}x from 1 to 2 vCPUs")
    k = cal.scale(targets)
    for node, kinds in result.ratios().items():
        console.print(f"node {node}: ratio read {kinds['read'][1]:.2f} (want {kinds['read'][0]:.2f}), "
                      f"write {kinds['write'][1]:.2f} (want {kinds['write'][0]:.2f})")
    console.print(f"k = {k:.2f}; largest ratio error under MTTCG: {100 * result.ratio_error_max:.1f} %")
    return 0 if survived == args.boots else 1


if __name__ == "__main__":
    sys.exit(main())
