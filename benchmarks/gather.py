"""`llamas-agent gather` on an idle guest: seconds per call, without DAMON.

Usage: python benchmarks/gather.py [TOPOLOGY...] [--repeat N] [--accel auto|kvm|tcg]
Goal: under 1 s for the whole command in the guest (python3 start included).
Three figures per call: the command's wall time measured in the guest, the agent's own
`gather_seconds` (reading /proc and /sys only), and the host's round trip over SSH with
the typed parse (testbed.agent.gather).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import _vmhost  # benchmarks/_vmhost.py: each script runs as `python benchmarks/NAME.py`
from rich.console import Console
from rich.table import Table

from testbed import agent, topology
from testbed.vm import VM

GOAL_S = 1.0
# One guest command times every call: no SSH in the figure, only the agent.
GUEST_LOOP = ("for i in $(seq {n}); do s=$(date +%s%N); llamas-agent gather > /tmp/gather.json; "
              "e=$(date +%s%N); echo $(( (e - s) / 1000 )) "
              "$(grep -o '\"gather_seconds\": [0-9.]*' /tmp/gather.json | cut -d' ' -f2); done")


def measure(vm: VM, repeat: int) -> dict[str, list[float]]:
    """Seconds per call: guest wall, agent-internal, host round trip; the first call, which
    compiles the freshly copied agent's bytecode, is reported apart."""
    lines = vm.shell.run(GUEST_LOOP.format(n=repeat + 1), timeout=60 + 10 * repeat).stdout.split("\n")
    first, *pairs = [line.split() for line in lines if line.strip()]
    host_s = []
    for _ in range(repeat):
        started = time.monotonic()
        state = agent.gather(vm.shell)
        host_s.append(time.monotonic() - started)
    return {"guest wall": [int(us) / 1e6 for us, _ in pairs], "agent internal": [float(g) for _, g in pairs],
            "host round trip": host_s, "first call, guest wall": [int(first[0]) / 1e6],
            "_processes": [len(state.processes)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topologies", nargs="*", default=["dram-cxl"])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to let the guest go idle after boot")
    args = parser.parse_args()
    console = Console()
    img, accel = _vmhost.start(console, args.accel)
    table = Table(title=f"llamas-agent gather, idle guest, no DAMON ({accel.upper()}, {args.repeat} calls; "
                        f"goal < {GOAL_S:.0f} s in the guest)")
    for column in ("topology", "processes", "figure", "median s", "min s", "max s", "goal"):
        table.add_column(column)
    for name in args.topologies:
        with VM(topology.load(topology.resolve(name)), img, accel) as vm:
            time.sleep(args.settle)
            figures = measure(vm, args.repeat)
        processes = str(figures.pop("_processes")[0])
        for figure, values in figures.items():
            median = statistics.median(values)
            goal = "" if figure != "guest wall" else "[green]met[/green]" if median < GOAL_S else "[red]missed[/red]"
            table.add_row(name, processes, figure, f"{median:.3f}", f"{min(values):.3f}", f"{max(values):.3f}", goal)
            name = processes = ""
    console.print(table)
    console.print(f"host load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
                  f"on {os.cpu_count()} CPUs (other guests share them under TCG)")


if __name__ == "__main__":
    main()
