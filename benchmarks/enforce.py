"""`llamas-agent enforce`'s own cost: its CPU share of one vCPU per round, and what the workload loses.

Usage: python benchmarks/enforce.py [--policy write-aware] [--intervals 2 5 10] [--rounds 5]
                                    [--topology dram-nvm] [--accel auto|kvm|tcg]
Goal (issue 14): below 5 % of one vCPU at the policy's interval.

One boot; the hot-table workload (a 320 MiB table it reads and a 192 MiB log it writes,
512 MiB in scope) runs throughout and prints its progress every second. First its rate
alone, then the daemon at each interval for a few rounds (`--pids` the workload, the
policy's limits otherwise), each round's `cpu_percent` as the daemon records it (its own
process: user and system time over the round, including its DAMON set-up and reading),
and the workload's rate meanwhile. The first round moves pages into place and is shown
apart. kdamond, the kernel thread that samples for the daemon's DAMON watch, is not in
the daemon's CPU time; the workload's rate is the figure that includes it (under
thread=single every vCPU shares one host thread).

Last, what a round would cost on a native core: TCG runs the guest's code many times
slower than the host runs it, so a share of an emulated vCPU overstates the share of a
real one. A fixed pure-Python loop (the daemon is Python) is timed in the guest, alone,
and on this host; a steady round's CPU divided by that slow-down is its native estimate,
set against the policy's own interval (`limits.interval_s`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _vmhost  # benchmarks/_vmhost.py: each script runs as `python benchmarks/NAME.py`
from rich.console import Console
from rich.table import Table

from testbed import agent, topology
from testbed.evaluation import matrix, workload
from testbed.vm import VM

GOAL_PERCENT = 5.0
WORKLOAD_LOG = "/tmp/bench-enforce-workload.log"
ALONE_S = 20
LOOP = "import time; t = time.process_time(); sum(i * i for i in range(2_000_000)); print(time.process_time() - t)"


def progress(vm: VM) -> list[tuple[float, int]]:
    """(seconds, operations) of every tick the workload has printed."""
    return workload.ticks(vm.shell.run(f"cat {WORKLOAD_LOG}").stdout)


def rate(ticks: list[tuple[float, int]], since: float, until: float) -> float:
    """Operations per second between two moments of the workload's clock."""
    inside = [(t, ops) for t, ops in ticks if since <= t <= until]
    if len(inside) < 2:
        return 0.0
    (t0, a), (t1, b) = inside[0], inside[-1]
    return (b - a) / (t1 - t0)


def loop_seconds(run) -> float:
    """Median CPU seconds of LOOP over 3 runs; `run(code)` runs Python code and returns its output."""
    return statistics.median(float(run(LOOP)) for _ in range(3))


def enforce(vm: VM, policy: str, pid: int, interval: float, rounds: int) -> list[dict]:
    """Run the daemon for `rounds` rounds at `interval`; its round records."""
    out = vm.shell.run(f"llamas-agent enforce /tmp/bench-policy.json --pids {pid} --interval {interval} "
                       f"--rounds {rounds}", timeout=120 + rounds * (interval + 60)).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="write-aware", help="a file of benchmarks/policies/")
    parser.add_argument("--intervals", type=float, nargs="+", default=[2, 5, 10])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--topology", default="dram-nvm")
    parser.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    args = parser.parse_args()
    console = Console(width=160)  # the table whole, also when piped to a file
    img, accel = _vmhost.start(console, args.accel, f"policy {args.policy}; hot-table, 320 + 192 MiB in scope")
    hot_table = workload.load(workload.resolve("hot-table"))
    table = Table(title=f"llamas-agent enforce: its CPU share of one vCPU ({accel.upper()}, {args.rounds} rounds "
                        f"per interval; goal < {GOAL_PERCENT:.0f} %)")
    for column in ("interval s", "first round: moved MiB, CPU %", "later rounds: CPU % median (min..max)",
                   "CPU s per round", "workload ops/s (alone)", "goal"):
        table.add_column(column, justify="right")
    native = loop_seconds(lambda code: subprocess.run([sys.executable, "-c", code], capture_output=True,
                                                      text=True, check=True).stdout)
    policy_text = Path(matrix.rules_file(args.policy)).read_bytes()
    interval_s = json.loads(policy_text)["limits"]["interval_s"]
    steady: list[float] = []
    with VM(topology.load(topology.resolve(args.topology)), img, accel) as vm:
        guest = loop_seconds(lambda code: vm.shell.run(f"python3 -c '{code}'").stdout)
        hot_table.install(vm.shell)
        agent.upload_text(vm.shell, policy_text, "/tmp/bench-policy.json")
        command = hot_table.command(1, seconds=24 * 3600, tick_ms=1000)
        pid = int(vm.shell.run(f"setsid {command} </dev/null >{WORKLOAD_LOG} 2>&1 & echo $!").stdout)
        vm.shell.run("echo 0 > /proc/sys/kernel/numa_balancing")  # the daemon alone moves pages
        time.sleep(ALONE_S)
        ticks = progress(vm)
        alone = rate(ticks, ticks[0][0], ticks[-1][0]) if ticks else 0.0
        for interval in args.intervals:
            started = progress(vm)[-1][0]
            records = enforce(vm, args.policy, pid, interval, args.rounds)
            ended = progress(vm)[-1][0]
            first, later = records[0], records[1:] or records
            shares = [r["cpu_percent"] for r in later if r["cpu_percent"] is not None]
            median = statistics.median(shares)
            steady = [r["cpu_seconds"] for r in later]  # the last interval's feed the native estimate
            table.add_row(f"{interval:g}", f"{first['moved_bytes'] >> 20}, {first['cpu_percent']:.1f}",
                          f"{median:.1f} ({min(shares):.1f}..{max(shares):.1f})",
                          f"{statistics.median(steady):.2f}",
                          f"{rate(progress(vm), started, ended):,.0f} ({alone:,.0f})",
                          "[green]met[/green]" if median < GOAL_PERCENT else "[red]missed[/red]")
        vm.shell.run(f"kill {pid}; llamas-agent undo >/dev/null", check=False)
    console.print(table)
    slow_down = guest / native
    round_s = statistics.median(steady) / slow_down
    console.print(f"A Python loop took {guest:.2f} s of CPU in the guest and {native:.3f} s on this host: "
                  f"{slow_down:.0f}x. A steady round on a native core: ~{1000 * round_s:.0f} ms, "
                  f"{100 * round_s / interval_s:.1f} % of the policy's {interval_s:g} s interval.")


if __name__ == "__main__":
    main()
