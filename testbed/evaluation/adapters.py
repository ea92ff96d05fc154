"""Output adapters: a workload's printed output -> its figures (name -> number).

A workload file names its adapter; a new output format is one small
function registered here, never harness code.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

Adapter = Callable[[str], dict[str, float]]


class AdapterError(ValueError):
    """The output does not hold the figures the adapter reads."""


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def keyvalue(output: str) -> dict[str, float]:
    """The last line made of `key=value` pairs; the numeric values are the figures."""
    for line in reversed(output.strip().splitlines()):
        pairs = [token.split("=", 1) for token in line.split()]
        if pairs and all(len(p) == 2 and p[0] for p in pairs):
            figures = {k: v for k, v in ((k, _number(v)) for k, v in pairs) if v is not None}
            if figures:
                return figures
    raise AdapterError(f"no line of key=value figures in the output: {output[-300:]!r}")


def redis_benchmark_csv(output: str) -> dict[str, float]:
    """`redis-benchmark --csv`: per test (set, get, ...) its rps and latencies in ms, plus the whole run's
    ops_per_s (requests over the summed time, the tests having run one after another, equal -n) and
    p99_ms (the worst test's p99)."""
    lines = [line for line in output.splitlines() if line.startswith('"')]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    if not rows or "rps" not in rows[0]:
        raise AdapterError(f"no redis-benchmark CSV table in the output: {output[-300:]!r}")
    figures: dict[str, float] = {}
    for row in rows:
        test = row["test"].lower().replace(" ", "_")
        for column, cell in row.items():
            if column != "test" and _number(cell) is not None:
                figures[f"{test}_{column.replace('_latency_ms', '_ms')}"] = float(cell)
    rps = [float(row["rps"]) for row in rows]
    figures["ops_per_s"] = len(rps) / sum(1 / r for r in rps)
    figures["p99_ms"] = max(float(row["p99_latency_ms"]) for row in rows)
    batch = [line for line in output.splitlines() if line.startswith("batch_")]
    if batch:  # a batch job ran beside the server: its figures too
        figures.update(keyvalue(batch[-1]))
    return figures


ADAPTERS: dict[str, Adapter] = {"keyvalue": keyvalue, "redis-benchmark-csv": redis_benchmark_csv}
