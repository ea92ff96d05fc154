"""How much slower the emulated machine runs than this host, by kind of work, beside k.

Felt latency slows memory by k (felt / target), and the kernel's policy clocks are scaled by the
same k. TCG slows other work by its own factors: this prints them. The same two programs run
natively on the host and in the guest (emulated mode, delays fitted), three times each:

- a register-only loop (`latency_probe spin`): the workload's own compute;
- the skewed kernel's first touch of 256 MiB in base pages (`init_s`): page faults and the
  zeroing of each page, kernel work of the kind a NUMA hint fault and its page copy are.

    python benchmarks/tcg_speed.py [TOPOLOGY] [--single]     (nox -s bench-tcg-speed)

A kind of work slowed by more than k costs the emulated machine more than it would cost the
modelled one (README, "Fair baselines": what that means for reactive policies).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
from pathlib import Path

from _vmhost import start
from rich.console import Console

from testbed import guest_binary
from testbed.latency.emulated import EmulatedMachine, ns_per_op
from testbed.latency.felt import fit
from testbed.topology import load, resolve

BENCH = Path(__file__).resolve().parent
TOUCH = BENCH / "workloads" / "src" / "skewed_access.c"
GUEST_TOUCH = "/usr/local/bin/skewed_access"
TOUCH_ARGS = "size_mib=256 hot_mib=32 ops=1000 huge_pages=0"
SPIN_MILLIONS = 100
REPEATS = 3


def init_s(output: str) -> float:
    """The first touch's seconds from the skewed kernel's last line."""
    return float(re.search(r"\binit_s=([\d.]+)", output).group(1))


def _output(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def native() -> tuple[list[float], list[float]]:
    """(ns per spin step, first-touch seconds) on this host, REPEATS each (the guest's static binaries)."""
    probe, touch = guest_binary.build(BENCH / "latency_probe.c"), guest_binary.build(TOUCH)
    spins = [ns_per_op(_output([str(probe), "spin", str(SPIN_MILLIONS), "1"])) for _ in range(REPEATS)]
    touches = [init_s(_output([str(touch), *TOUCH_ARGS.split()])) for _ in range(REPEATS)]
    return spins, touches


def guest(machine: EmulatedMachine) -> tuple[list[float], list[float]]:
    """The same in the guest, on vCPU 0 with its memory on node 0, under whatever delays are set."""
    spins = [machine.run_spins({0: SPIN_MILLIONS})[0] for _ in range(REPEATS)]
    command = f"numactl --membind=0 --physcpubind=0 {GUEST_TOUCH} {TOUCH_ARGS}"
    touches = [init_s(machine.vm.shell.run(command, timeout=900).stdout) for _ in range(REPEATS)]
    return spins, touches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("topology", nargs="?", default="dram-nvm")
    parser.add_argument("--single", action="store_true", help="one TCG thread (default: a thread per vCPU)")
    args = parser.parse_args()
    console = Console()
    img, _ = start(console, "tcg")
    spin_n, touch_n = native()
    console.print(f"native: spin {spin_n} ns/step, first touch {touch_n} s")
    with EmulatedMachine(load(resolve(args.topology)), img, mttcg=not args.single) as machine:
        felt = fit(machine)
        guest_binary.install(machine.vm.shell, TOUCH, GUEST_TOUCH)
        console.print(f"{args.topology}, {'one TCG thread' if args.single else 'a TCG thread per vCPU'}: "
                      f"k = {felt.k:.2f}, delays {felt.delays}")
        for label, delays in (("delays on", felt.delays), ("delays off", {n: (0, 0) for n in felt.delays})):
            machine.set_delays(delays)
            spin_g, touch_g = guest(machine)
            spin_x = statistics.median(spin_g) / statistics.median(spin_n)
            touch_x = statistics.median(touch_g) / statistics.median(touch_n)
            console.print(f"{label}: spin {spin_g} ns/step, first touch {touch_g} s")
            console.print(f"{label}: slowdown: register loop {spin_x:.1f}x, first touch (kernel) {touch_x:.1f}x, "
                          f"memory (k) {felt.k:.1f}x")


if __name__ == "__main__":
    main()
