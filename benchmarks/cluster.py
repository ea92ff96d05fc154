"""An evaluation matrix on 1 and 2 local Ray workers: wall time, and felt latency with guests side by side.

    python benchmarks/cluster.py [MATRIX] [--workers 1 2] [--topology dram-nvm]

For each worker count N: the wall time of `testbed eval MATRIX --workers N` and its
runs; then N `testbed probe-latency TOPOLOGY --json` at once, each guest's largest
ratio error against the topology (N = 1: alone). Parallel guests share the host's
cores and caches, and the delays were fitted with one guest running: the second
figure says how much a second guest spoils what the first feels. The median set-up
and timed seconds per run say whether runs slowed when guests shared the host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

TESTBED = [sys.executable, "-m", "testbed.cli"]


def timed_eval(matrix: str, workers: int, out: Path) -> tuple[float, list[dict]]:
    """Seconds and runs of the matrix on `workers` local Ray workers."""
    started = time.monotonic()
    subprocess.run([*TESTBED, "eval", matrix, "--out", str(out), "--workers", str(workers)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - started, json.loads((out / "results.json").read_text())["runs"]


def median_phase(runs: list[dict], phase: str) -> float:
    """Median seconds of one phase of a run (set-up, timed): whether runs slowed when guests shared the host."""
    return statistics.median(r["durations"].get(phase, 0.0) for r in runs) if runs else 0.0


def side_by_side(topology: str, guests: int) -> list[float]:
    """Largest ratio error of each of `guests` probe-latency runs started together."""
    procs = [subprocess.Popen([*TESTBED, "probe-latency", topology, "--json"], stdout=subprocess.PIPE, text=True)
             for _ in range(guests)]
    errors = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"probe-latency {topology} failed ({proc.returncode})")
        errors.append(json.loads(out)["ratio_error_max"])
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("matrix", nargs="?", default="default")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--topology", default="dram-nvm", help="for the felt latency figure")
    args = parser.parse_args()
    table = Table(title=f"{args.matrix} on local Ray workers; felt latency on {args.topology}")
    for column in ("workers", "wall s", "runs (failed)", "median set-up s", "median timed s",
                   "ratio error max, each guest"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        for n in args.workers:
            seconds, runs = timed_eval(args.matrix, n, Path(tmp) / f"w{n}")
            errors = side_by_side(args.topology, n)
            table.add_row(str(n), f"{seconds:.0f}", f"{len(runs)} ({sum(not r['ok'] for r in runs)})",
                          f"{median_phase(runs, 'setup'):.1f}", f"{median_phase(runs, 'timed'):.1f}",
                          ", ".join(f"{100 * e:.1f} %" for e in errors))
    Console().print(table)


if __name__ == "__main__":
    main()
