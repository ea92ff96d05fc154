"""Summary tables: per topology, workload and policy, the median headline figure, its spread, and its ratio to `default`.

Spread is given both ways: min..max over the repeats and the interquartile
range.  `clear` says whether a policy's range lies wholly above or below the
default's (no overlap): a difference larger than the spread across repeats.
`fast_share` is the median share of memory traffic (the plugin's misses)
served by the topology's fastest node (after the warm-up, for a time-based run); `hot_on_fast`
the median share of the workload's hot set found on that node by its last census (a workload
that knows its hot set: the skewed kernel).  Ratios are policy median / default
median, so above 1 is better for throughput-like figures.  `others_share` is the median share of
the host core that vCPUs other than the workload's held in the timed phase: under one TCG
thread a kernel thread on another vCPU (kswapd, kdamond) runs instead of the workload, where
the modelled machine would run it beside the workload.  `workload_sys_share` is the median
share of the workload's own CPU time that the kernel spent on its behalf (the skewed kernel
reports user_s and sys_s): where a reactive policy's hint faults and promotions cost it time.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .results import Run

TXT_NAME, CSV_NAME = "summary.txt", "summary.csv"
BASELINE = "default"


@dataclass(frozen=True)
class Row:
    """One policy on one workload on one topology."""

    topology: str
    workload: str
    policy: str
    figure: str
    runs: int
    failed: int
    median: float | None
    minimum: float | None
    maximum: float | None
    q1: float | None
    q3: float | None
    ratio: float | None
    clear: str          # "above", "below", "overlap" (against default), or "" (no comparison)
    fast_share: float | None
    hot_on_fast: float | None = None   # of the hot set's sampled pages, at the last census
    # What the kernel did in the timed phase (medians over the runs): did a reactive policy act at all?
    hint_faults: float | None = None
    promoted: float | None = None      # pages (pgpromote_success)
    demoted: float | None = None       # pages (pgdemote_kswapd + pgdemote_direct)
    kdamond_s: float | None = None     # kdamond's CPU seconds
    # of the workload's own CPU time in its timed loop, the share spent in the kernel on its behalf (hint
    # faults and the promotions they make): a reactive policy's cost in the workload's own time
    workload_sys_share: float | None = None
    others_share: float | None = None  # of the host core, held by vCPUs other than the workload's (Run.others_share)
    # What an enforcing policy's daemon did (medians): pages it moved, its share of one vCPU.
    agent_moved_mib: float | None = None
    agent_cpu_percent: float | None = None
    agent_steady_cpu_percent: float | None = None  # of the rounds that moved nothing


def quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartile (inclusive method; the value itself for one sample)."""
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def group(runs: list[Run]) -> dict[tuple[str, str, str], list[Run]]:
    """Runs per (topology, workload, policy), each component in the order it first appears."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.topology, run.workload, run.policy), []).append(run)
    order = [list(dict.fromkeys(key[i] for key in groups)) for i in range(3)]
    return dict(sorted(groups.items(), key=lambda kv: tuple(order[i].index(kv[0][i]) for i in range(3))))


def _clear(row: Row, base: Row | None) -> str:
    if base is None or row.policy == BASELINE or row.minimum is None or base.minimum is None:
        return ""
    if row.minimum > base.maximum:
        return "above"
    if row.maximum < base.minimum:
        return "below"
    return "overlap"


def median(values: list[float]) -> float | None:
    """The median, None for no values (a cell whose runs all failed or lack the figure)."""
    return statistics.median(values) if values else None


def _kernel(runs: list[Run]) -> dict[str, float | None]:
    """Medians of what the kernel did, over the runs that recorded it."""
    measured = [r for r in runs if r.ok and r.vmstat]
    return {"hint_faults": median([r.vmstat.get("numa_hint_faults", 0) for r in measured]),
            "promoted": median([r.vmstat.get("pgpromote_success", 0) for r in measured]),
            "demoted": median([r.vmstat.get("pgdemote_kswapd", 0) + r.vmstat.get("pgdemote_direct", 0)
                               for r in measured]),
            "kdamond_s": median([r.kthread_cpu_s.get("kdamond", 0.0) for r in measured]),
            "workload_sys_share": median([s for s in (_sys_share(r) for r in runs if r.ok) if s is not None]),
            "others_share": median([s for s in (r.others_share() for r in measured) if s is not None]),
            "agent_moved_mib": median([r.enforcer.get("moved_mib", 0.0) for r in measured if r.enforcer]),
            "agent_cpu_percent": median([r.enforcer.get("cpu_percent", 0.0) for r in measured if r.enforcer]),
            "agent_steady_cpu_percent": median([r.enforcer["steady_cpu_percent"] for r in measured
                                                if "steady_cpu_percent" in r.enforcer])}


def _sys_share(run: Run) -> float | None:
    """sys_s / (user_s + sys_s) of a workload that reports its CPU time (the skewed kernel)."""
    user, sys = run.figures.get("user_s"), run.figures.get("sys_s")
    return None if user is None or sys is None or user + sys <= 0 else sys / (user + sys)


def _row(key: tuple[str, str, str], runs: list[Run], fast_node: int, figure: str) -> Row:
    values = sorted(v for v in (r.figures.get(figure) for r in runs if r.ok) if v is not None)
    shares = [s for s in (r.fast_share(fast_node) for r in runs if r.ok) if s is not None]
    placed = [s for s in (r.hot_placed(fast_node) for r in runs if r.ok) if s is not None]
    stats = (statistics.median(values), values[0], values[-1], *quartiles(values)) if values else (None,) * 5
    return Row(*key, figure=figure, runs=len(runs), failed=len(runs) - len(values),
               median=stats[0], minimum=stats[1], maximum=stats[2], q1=stats[3], q3=stats[4], ratio=None,
               clear="", fast_share=median(shares), hot_on_fast=median(placed), **_kernel(runs))


def summarize(runs: list[Run], fast_nodes: dict[str, int] | None = None) -> list[Row]:
    """Rows grouped by topology, then workload, then policy (each in order of first appearance); `fast_nodes` maps topology -> fastest node (default 0)."""
    fast_nodes = fast_nodes or {}
    runs = [r for r in runs if not r.interrupted]  # cut short by Ctrl-C: neither a figure nor a failure
    rows = [_row(key, cell, fast_nodes.get(key[0], 0), figure) for key, cell in group(runs).items()
            for figure in (cell[0].primary, *cell[0].also)]
    # Each figure's policies together: topology, workload, figure, policy, in order of first appearance.
    first = {}
    for i, r in enumerate(rows):
        first.setdefault((r.topology, r.workload), i)
        first.setdefault((r.topology, r.workload, r.figure), i)
    rows.sort(key=lambda r: (first[(r.topology, r.workload)], first[(r.topology, r.workload, r.figure)]))
    baseline = {(r.topology, r.workload, r.figure): r for r in rows if r.policy == BASELINE}
    out = []
    for row in rows:
        base = baseline.get((row.topology, row.workload, row.figure))
        ratio = row.median / base.median if base and base.median and row.median is not None else None
        out.append(Row(**{**asdict(row), "ratio": ratio, "clear": _clear(row, base)}))
    return out


# ---- output ---------------------------------------------------------------


def fmt(value: float | None, digits: int | None = None) -> str:
    """Large figures as whole numbers with separators, small ones to 4 significant digits."""
    if value is None:
        return "-"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def table(rows: list[Row], title: str = "evaluation summary") -> Table:
    """A rich table of the rows (the agent's column only where an enforcing policy ran)."""
    t = Table(title=title)
    agent = any(r.agent_moved_mib is not None for r in rows)
    census = any(r.hot_on_fast is not None for r in rows)
    for name, justify in (("topology", "left"), ("workload", "left"), ("figure", "left"), ("policy", "left"),
                          ("runs", "right"),
                          ("median", "right"), ("min..max", "right"), ("IQR", "right"), ("x default", "right"),
                          ("vs default", "left"), ("fast-node share", "right"),
                          *([("hot set on fast", "right")] if census else []),
                          ("faults/promoted/demoted, kdamond s (workload in kernel)", "right"), ("other vCPUs", "right"),
                          *([("agent: moved MiB, CPU (rounds moving nothing)", "right")] if agent else [])):
        t.add_column(name, justify=justify)
    for r in rows:
        runs = f"{r.runs - r.failed}/{r.runs}"
        t.add_row(r.topology, r.workload, r.figure, r.policy, runs, fmt(r.median),
                  f"{fmt(r.minimum)}..{fmt(r.maximum)}", f"{fmt(r.q1)}..{fmt(r.q3)}", fmt(r.ratio, 3),
                  r.clear or "-", _percent(r.fast_share),
                  *([_percent(r.hot_on_fast)] if census else []), _kernel_cell(r),
                  _percent(r.others_share),
                  *([_agent_cell(r)] if agent else []))
    return t


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _agent_cell(r: Row) -> str:
    if r.agent_moved_mib is None:
        return "-"
    steady = "" if r.agent_steady_cpu_percent is None else f" ({r.agent_steady_cpu_percent:.1f} % steady)"
    return f"{r.agent_moved_mib:,.0f}, {r.agent_cpu_percent:.0f} %{steady}"


def _kernel_cell(r: Row) -> str:
    if r.hint_faults is None:
        return "-"
    in_kernel = "" if r.workload_sys_share is None else f", {r.workload_sys_share:.1%} in kernel"
    return f"{r.hint_faults:,.0f}/{r.promoted:,.0f}/{r.demoted:,.0f}, {r.kdamond_s:.1f}{in_kernel}"


def to_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(Row.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in asdict(r).items()} for r in rows)
    return out.getvalue()


def plain_text(*renderables) -> str:
    """What a wide console prints for `renderables`, without colour: the text files beside the results."""
    plain = Console(file=io.StringIO(), width=240, color_system=None, record=True)
    for r in renderables:
        plain.print(r, highlight=False)
    return plain.export_text()


def write(directory: Path, rows: list[Row], console: Console | None = None) -> None:
    """Print the table (if `console`) and write summary.txt (the same table, plain) and summary.csv."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if console is not None:
        console.print(table(rows))
    (directory / TXT_NAME).write_text(plain_text(table(rows)))
    (directory / CSV_NAME).write_text(to_csv(rows))
