"""Does the guest kernel see accesses to pages that TCG's software TLB holds?  DAMON's answer, measured.

Usage: python benchmarks/accessed_bits.py [TOPOLOGY] [--rounds N] [--mib M] [--no-reach]

The guest loops over an M MiB buffer (one byte per 4 KiB page, bound to node 0)
while DAMON watches it for 3 s at a time; each round prints the loop's speed
(passes per second: fast when QEMU's TLB holds the buffer, slow when every pass
walks the page tables), what DAMON saw (the buffer's nr_accesses, of 20 samples
per aggregation) and the least it would see if accessed bits behaved as on
hardware (20 x the chance that a pass falls within one 5 ms sample).  Why they
can differ, and what `tlb-reach` does about it: testbed/tlb_reach.py.
`--no-reach` boots without tlb-reach: plain TCG.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from testbed import image, tlb_reach, topology
from testbed.latency.emulated import EmulatedMachine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", default="dram-nvm")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--no-reach", action="store_true", help="stop tlb-reach: plain TCG")
    args = parser.parse_args()
    topo = topology.load(topology.resolve(args.topology))
    reach = "plain TCG" if args.no_reach else f"tlb-reach every {tlb_reach.PERIOD_MS} ms"
    table = Table(title=f"{args.topology}, {reach}: DAMON's view of a {args.mib} MiB buffer touched in a loop")
    for column in ("round", "passes/s", "nr_accesses seen", "at least, on hardware"):
        table.add_column(column, justify="right")
    with EmulatedMachine(topo, image.ensure(), tlb_reach_ms=0 if args.no_reach else tlb_reach.PERIOD_MS) as machine:
        shell = machine.vm.shell
        shell.run("echo 0 > /proc/sys/kernel/numa_balancing")  # no hint-fault shootdowns: plain first touch
        for rnd, seen in enumerate(tlb_reach.damon_view(shell, args.mib, args.rounds)):
            table.add_row(str(rnd), f"{seen.passes_per_s:.1f}", f"{seen.nr_accesses:.1f}", f"{seen.floor:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
