"""Boot time: seconds from QEMU start to SSH-ready, per topology.

Usage: python benchmarks/boot.py [TOPOLOGY...] [--repeat N] [--accel auto|kvm|tcg]
Goal: 20 s or less under TCG, 3 s or less under KVM.
"""

from __future__ import annotations

import argparse
import re
import statistics

import _vmhost  # benchmarks/_vmhost.py: each script runs as `python benchmarks/NAME.py`
from rich.console import Console
from rich.table import Table

from testbed import topology
from testbed.vm import VM

GOAL_S = {"tcg": 20.0, "kvm": 3.0}


def boot_once(topo, img, accel: str) -> tuple[float, float | None]:
    """(host seconds to SSH-ready, guest uptime when sshd started)."""
    vm = VM(topo, img, accel)
    try:
        vm.start()
        seconds = vm.wait_ready()
        match = re.search(r"sshd started after ([\d.]+) s", vm.serial_tail())
        return seconds, float(match.group(1)) if match else None
    finally:
        vm.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topologies", nargs="*")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    args = parser.parse_args()
    console = Console()
    img, accel = _vmhost.start(console, args.accel)
    table = Table(title=f"QEMU start -> SSH ready ({accel.upper()}, {args.repeat} boots each; goal <= {GOAL_S[accel]:.0f} s)")
    for column in ("topology", "median s", "min s", "max s", "guest uptime at sshd s", "goal"):
        table.add_column(column)
    for name in args.topologies or topology.available():
        topo = topology.load(topology.resolve(name))
        runs = [boot_once(topo, img, accel) for _ in range(args.repeat)]
        host_s = [r[0] for r in runs]
        guest_s = [r[1] for r in runs if r[1] is not None]
        median = statistics.median(host_s)
        table.add_row(name, f"{median:.1f}", f"{min(host_s):.1f}", f"{max(host_s):.1f}",
                      f"{statistics.median(guest_s):.1f}" if guest_s else "-",
                      "[green]met[/green]" if median <= GOAL_S[accel] else "[red]missed[/red]")
    console.print(table)


if __name__ == "__main__":
    main()
