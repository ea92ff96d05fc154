"""PNG plots of an evaluation: each figure (throughput, p99, ...) per policy per topology, and which node served the traffic;
for time-based runs, throughput and the fast node's share of the misses over time, and where a workload
counts its hot set, the share of it on the fast node over time.

Figures are built with matplotlib's object API (no pyplot, no global
state), so they can be inspected in tests and saved without a display.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from .results import Run
from .summary import Row

THROUGHPUT_PNG, NODE_SHARE_PNG = "throughput.png", "node-share.png"
THROUGHPUT_TIME_PNG, SHARE_TIME_PNG, HOT_TIME_PNG = "throughput-time.png", "share-time.png", "hot-time.png"
BAR_SPAN = 0.8  # of each group's width on the x axis
BIN_S = 1.0     # over-time plots: one point per second (ticks are finer, and noisier)


def _ordered(values) -> list[str]:
    return list(dict.fromkeys(values))


def throughput(rows: list[Row]) -> Figure:
    """One panel per topology and figure (ops/s, p99, ...): per workload a group of bars, one per policy
    (median, min..max whiskers)."""
    panels = _ordered((r.topology, r.figure) for r in rows)
    policies = _ordered(r.policy for r in rows)
    fig = Figure(figsize=(max(6, 3 + 1.2 * len(policies)), 3.5 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    width = BAR_SPAN / len(policies)
    for ax, (topo, figure) in zip(axes, panels):
        mine = [r for r in rows if r.topology == topo and r.figure == figure]
        workloads = _ordered(r.workload for r in mine)
        for k, policy in enumerate(policies):
            cells = [next((r for r in mine if r.workload == w and r.policy == policy), None) for w in workloads]
            xs = [i - BAR_SPAN / 2 + (k + 0.5) * width for i in range(len(workloads))]
            heights = [c.median if c and c.median is not None else 0.0 for c in cells]
            low = [h - c.minimum if c and c.minimum is not None else 0.0 for h, c in zip(heights, cells)]
            high = [c.maximum - h if c and c.maximum is not None else 0.0 for h, c in zip(heights, cells)]
            ax.bar(xs, heights, width, yerr=[low, high], capsize=3, label=policy)
        ax.set_xticks(range(len(workloads)), workloads)
        ax.set_title(topo)
        ax.set_ylabel(figure)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    return fig


def _pooled_share(runs: list[Run]) -> dict[int, float]:
    """Share of misses per node, pooled over the runs (so shares still sum to 1)."""
    totals: dict[int, int] = {}
    for run in runs:
        for node, c in run.counters.items():
            if node >= 0:
                totals[node] = totals.get(node, 0) + c.misses
    whole = sum(totals.values())
    return {n: v / whole for n, v in sorted(totals.items())} if whole else {}


def node_share(runs: list[Run]) -> Figure:
    """One panel per topology and workload: per policy a stacked bar of the share of misses each node served."""
    runs = [r for r in runs if r.ok and r.counters]
    panels = _ordered((r.topology, r.workload) for r in runs)
    fig = Figure(figsize=(7, 3 * max(1, len(panels))), layout="constrained")
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for ax, (topo, workload) in zip(axes, panels):
        mine = [r for r in runs if r.topology == topo and r.workload == workload]
        policies = _ordered(r.policy for r in mine)
        shares = [_pooled_share([r for r in mine if r.policy == p]) for p in policies]
        nodes = sorted({n for s in shares for n in s})
        bottom = [0.0] * len(policies)
        for node in nodes:
            heights = [s.get(node, 0.0) for s in shares]
            ax.bar(policies, heights, BAR_SPAN, bottom=bottom, label=f"node {node}")
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of memory accesses")
        ax.set_title(f"{topo}: {workload}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return fig


Curve = Callable[[Run], list[tuple[float, float]]]


def over_time(runs: list[Run], curve: Curve, ylabel: str) -> Figure:
    """One panel per topology and workload, one line per policy: the median over repeats of `curve(run)` at
    each time, with a min..max band; a dotted line where the warm-up ends."""
    runs = [r for r in runs if r.ok and r.series is not None]
    panels = _ordered((r.topology, r.workload) for r in runs)
    fig = Figure(figsize=(8, 3.2 * max(1, len(panels))), layout="constrained")
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for ax, (topo, workload) in zip(axes, panels):
        mine = [r for r in runs if r.topology == topo and r.workload == workload]
        for policy in _ordered(r.policy for r in mine):
            by_time: dict[float, list[float]] = {}
            for run in (r for r in mine if r.policy == policy):
                for t, value in curve(run):
                    by_time.setdefault(t, []).append(value)
            times = sorted(by_time)
            line, = ax.plot(times, [statistics.median(by_time[t]) for t in times], label=policy)
            ax.fill_between(times, [min(by_time[t]) for t in times], [max(by_time[t]) for t in times],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        ax.axvline(mine[0].series.warmup_s, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{topo}: {workload}")
        ax.set_xlabel("seconds into the timed phase")
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return fig


def write(directory: Path, rows: list[Row], runs: list[Run], fast_nodes: dict[str, int] | None = None) -> list[Path]:
    """Save the plots as PNG into `directory`; return their paths (the node plots only if the counters saw
    traffic, the over-time plots only for time-based runs)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fast_nodes = fast_nodes or {}
    written = []
    figures = [(THROUGHPUT_PNG, throughput(rows))]
    if any(c.misses for r in runs for c in r.counters.values()):  # paced-core machines count no memory traffic
        figures.append((NODE_SHARE_PNG, node_share(runs)))
    if any(r.ok and r.series is not None for r in runs):
        figures.append((THROUGHPUT_TIME_PNG, over_time(runs, lambda r: r.series.throughput(BIN_S),
                                                       "operations per second")))
        figures.append((SHARE_TIME_PNG, over_time(
            runs, lambda r: r.series.share(fast_nodes.get(r.topology, 0), BIN_S), "fast node's share of misses")))
    if any(r.ok and r.series is not None and r.series.census for r in runs):
        figures.append((HOT_TIME_PNG, over_time(
            [r for r in runs if r.series is not None and r.series.census],
            lambda r: r.series.placed(fast_nodes.get(r.topology, 0)), "hot set on the fast node")))
    for name, fig in figures:
        fig.savefig(directory / name, dpi=110)
        written.append(directory / name)
    return written
