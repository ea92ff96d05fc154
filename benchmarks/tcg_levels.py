"""How far TCG's own cost per access moves from one QEMU process to the next, and what moves it.

A re-run's placement-fixed cells held their felt delays but not their time: the emulator's
own cost per operation sat on a level per process (README, "Felt latency"). This boots the
machine again and again at zero delay, under a TCG thread per vCPU, and chases memory on
its fastest node from one vCPU, in boots that rotate among arms:

- `as-is`: the machine the evaluation boots;
- `no-aslr`: QEMU started under `setarch -R` (the host's address-space layout fixed);
- `tlb-reach`: `tlb-reach` flushing every vCPU's TLB each 10 host ms.

Each boot runs chases of a small working set (any software TLB holds its pages) and of a
large one, three of each, and counts TCG's TLB flushes over each large chase (HMP `info jit`).

    python benchmarks/tcg_levels.py [TOPOLOGY] [--rounds N]     (nox -s bench-tcg-levels)
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import time
from collections.abc import Iterator

from _vmhost import start
from rich.console import Console
from rich.table import Table

from testbed import vm as vm_module
from testbed.evaluation.runner import fastest_nodes
from testbed.latency.emulated import EmulatedMachine
from testbed.topology import load, resolve

ARMS = ("as-is", "no-aslr", "tlb-reach")
SMALL_MIB, LARGE_MIB = 1, 32      # 256 and 8,192 pages
SMALL_PASSES, LARGE_PASSES = 64, 2
CHASES = 3
REACH_MS = 10


@contextlib.contextmanager
def fixed_layout(on: bool) -> Iterator[None]:
    """QEMU started under `setarch -R` inside the block, if `on` (the benchmark's own wrapper)."""
    plain = vm_module.VM.argv
    if on:
        vm_module.VM.argv = property(lambda self: ["setarch", "x86_64", "-R", *plain.fget(self)])
    try:
        yield
    finally:
        vm_module.VM.argv = plain


def partial_flushes(machine: EmulatedMachine) -> int:
    """TCG's partial TLB flushes so far, every vCPU's (HMP `info jit`)."""
    text = machine.vm.monitor.command("human-monitor-command", **{"command-line": "info jit"})
    found = re.search(r"TLB partial flushes\s+(\d+)", text)
    return int(found.group(1)) if found else -1


def one_boot(topology, image, arm: str) -> dict:
    """One boot of `arm`: ns per load of the small and large chases, and the flushes over each large one."""
    started = time.monotonic()
    with fixed_layout(arm == "no-aslr"), EmulatedMachine(topology, image, mttcg=True) as machine:
        node = fastest_nodes(topology)[0]  # no delays given: the plugin counts, and delays nothing
        if arm == "tlb-reach":
            machine.vm.set_tlb_reach(REACH_MS)
        small = [machine.run_probe("chase", node, SMALL_MIB, SMALL_PASSES) for _ in range(CHASES)]
        large, flushes = [], []
        for _ in range(CHASES):
            before = partial_flushes(machine)
            large.append(machine.run_probe("chase", node, LARGE_MIB, LARGE_PASSES))
            flushes.append(partial_flushes(machine) - before)
    return {"arm": arm, "small": small, "large": large, "flushes": flushes, "seconds": time.monotonic() - started}


def _cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def summary(boots: list[dict]) -> Table:
    """Per arm: each chase's range, the boots' medians, and how far those medians spread."""
    t = Table(title="TCG's cost per load at zero delay, ns (medians per boot; spread = their coefficient of variation)")
    for name in ("arm", "boots", f"{SMALL_MIB} MiB range", "boot medians", "spread",
                 f"{LARGE_MIB} MiB range", "boot medians", "spread", "partial flushes per chase"):
        t.add_column(name, justify="left" if name == "arm" else "right")
    for arm in ARMS:
        mine = [b for b in boots if b["arm"] == arm]
        if not mine:
            continue
        cells = []
        for size in ("small", "large"):
            every = [x for b in mine for x in b[size]]
            medians = [statistics.median(b[size]) for b in mine]
            cells += [f"{min(every):.0f}-{max(every):.0f}", ", ".join(f"{m:.0f}" for m in medians), f"{_cv(medians):.3f}"]
        flushes = [f for b in mine for f in b["flushes"]]
        t.add_row(arm, str(len(mine)), *cells, f"{min(flushes)}-{max(flushes)}")
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", default="dram-cxl")
    parser.add_argument("--rounds", type=int, default=4, help="boots per arm (default 4)")
    args = parser.parse_args()
    console = Console(width=170)  # the summary is wide; a pipe gets 80 columns otherwise
    image, _ = start(console, "tcg")
    topology = load(resolve(args.topology))
    boots = []
    for i in range(args.rounds * len(ARMS)):
        boot = one_boot(topology, image, ARMS[i % len(ARMS)])
        boots.append(boot)
        console.print(f"boot {i:2d} {boot['arm']:9s} {SMALL_MIB} MiB {[round(x) for x in boot['small']]} "
                      f"{LARGE_MIB} MiB {[round(x) for x in boot['large']]} flushes {boot['flushes']} "
                      f"({boot['seconds']:.0f} s)", highlight=False)
    console.print(summary(boots))


if __name__ == "__main__":
    main()
