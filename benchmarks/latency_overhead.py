"""Cost of the latency plugin against plain TCG: boot time and a memory-bound loop.

Usage: python benchmarks/latency_overhead.py [TOPOLOGY] [--boots N] [--runs N]

Boots the topology (default dram-cxl) under plain TCG (multi-threaded, as in
advertised mode), plain TCG with one thread (what the plugin requires), and
TCG with the plugin at zero delay (its instrumentation alone: address
lookup, node ranges, cache model, counters), and times in each a pointer
chase over 32 MiB on node 0, the fast node.  In the plugin's guest it then
sets the calibrated delays (if this host has a calibration, from
`testbed probe-latency`) and times the same loop again: the fast node as
emulated mode makes it feel.  Goal: the plugin's instrumentation costs no
more than 3x plain TCG on the loop.  The host is shared: figures are medians.
"""

from __future__ import annotations

import argparse
import statistics

from rich.console import Console
from rich.table import Table

from testbed import host, image, topology
from testbed.latency import calibrate
from testbed.latency.emulated import EmulatedMachine

GOAL_LOOP_X = 3.0
LOOP_NODE = 0


def loop_ns(machine: EmulatedMachine, runs: int) -> float:
    """Median ns per dependent load of the chase bound to LOOP_NODE."""
    return statistics.median(machine.run_probe("chase", LOOP_NODE, size_mib=32, passes=2) for _ in range(runs))


def measure(topo, img, boots: int, runs: int, plugin: bool, single: bool, calibrated: bool = False) -> dict:
    """Median boot seconds and loop ns/op of one configuration (and, with the plugin, calibrated figures)."""
    boot_s, loop, loop_cal = [], [], []
    for _ in range(boots):
        with EmulatedMachine(topo, img, plugin=plugin, tcg_single_thread=single) as machine:
            boot_s.append(machine.vm.boot_seconds)
            loop.append(loop_ns(machine, runs))
            if calibrated:
                cal = calibrate.load(calibrate.machine_key(machine))
                if cal is not None:
                    machine.set_delays(cal.delays(calibrate.targets(topo)))
                    loop_cal.append(loop_ns(machine, runs))
    return {"boot": statistics.median(boot_s), "loop": statistics.median(loop),
            "loop_cal": statistics.median(loop_cal) if loop_cal else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", default="dram-cxl")
    parser.add_argument("--boots", type=int, default=1, help="boots per configuration")
    parser.add_argument("--runs", type=int, default=5, help="loop runs per boot (median)")
    args = parser.parse_args()
    console = Console()
    host.ensure()
    img = image.ensure(console)
    topo = topology.load(topology.resolve(args.topology))
    with console.status("plain TCG (multi-threaded)"):
        plain = measure(topo, img, args.boots, args.runs, plugin=False, single=False)
    with console.status("plain TCG, thread=single"):
        single = measure(topo, img, args.boots, args.runs, plugin=False, single=True)
    with console.status("TCG, thread=single, latency plugin"):
        plugged = measure(topo, img, args.boots, args.runs, plugin=True, single=True, calibrated=True)

    table = Table(title=f"latency plugin overhead on {topo.name}, medians of {args.boots} boot(s) x {args.runs} "
                        f"loop runs (boot: QEMU start -> SSH; loop: pointer chase, 32 MiB on node {LOOP_NODE})")
    for column in ("configuration", "boot s", "boot x", "loop ns/op", "loop x"):
        table.add_column(column, justify="right")
    # The strictest baseline: the faster of the two plain configurations, per figure.
    base_boot, base_loop = min(plain["boot"], single["boot"]), min(plain["loop"], single["loop"])
    rows = [("plain TCG (multi-threaded)", plain["boot"], plain["loop"]),
            ("plain TCG, thread=single", single["boot"], single["loop"]),
            ("plugin, zero delay", plugged["boot"], plugged["loop"])]
    for name, boot, loop in rows:
        table.add_row(name, f"{boot:.1f}", f"{boot / base_boot:.2f}", f"{loop:.0f}", f"{loop / base_loop:.2f}")
    if plugged["loop_cal"] is not None:
        table.add_row("plugin, calibrated delays", "-", "-", f"{plugged['loop_cal']:.0f}",
                      f"{plugged['loop_cal'] / base_loop:.2f}")
    console.print(table)
    console.print("x: against the faster plain TCG configuration. Calibrated delays make node 0 feel "
                  "k x 100 ns on purpose; they are the emulation, not overhead.")
    x = plugged["loop"] / base_loop
    verdict = "[green]met[/green]" if x <= GOAL_LOOP_X else "[red]missed[/red]"
    console.print(f"plugin instrumentation on the loop: {x:.2f}x plain TCG (goal <= {GOAL_LOOP_X:.0f}x): {verdict}")


if __name__ == "__main__":
    main()
