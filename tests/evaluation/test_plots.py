"""Plots: the figures hold one bar per policy and workload, node shares stack to 1, and PNGs are written."""

from __future__ import annotations

import pytest
from matplotlib.container import BarContainer

from testbed.evaluation import plots, summary
from testbed.evaluation.series import Series

from .conftest import make_run

POLICIES = ["default", "interleave", "oracle"]


def runs():
    out = []
    for topo, nodes in (("dram-cxl", 2), ("hbm-dram-cxl", 3)):
        for workload in ("skewed-read", "skewed-write"):
            for k, policy in enumerate(POLICIES):
                for repeat in range(2):
                    misses = {n: 10 * (n + 1) + k for n in range(nodes)}
                    out.append(make_run(topology=topo, workload=workload, policy=policy, repeat=repeat,
                                        value=100.0 * (k + 1) + repeat, misses=misses))
    out.append(make_run(topology="dram-cxl", policy="llm", value=None, ok=False, error="x"))
    return out


def bars(ax) -> list[BarContainer]:
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def test_throughput_has_a_panel_per_topology_and_a_bar_per_policy_and_workload():
    rows = summary.summarize(runs())
    fig = plots.throughput(rows)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["dram-cxl", "hbm-dram-cxl"]
    first = bars(axes[0])
    assert [c.get_label() for c in first] == [*POLICIES, "llm"]
    assert all(len(c.patches) == 2 for c in first)  # one per workload
    # bar heights are the medians: oracle is policy k=2 -> 300.5 on both workloads
    assert [p.get_height() for p in first[2].patches] == pytest.approx([300.5, 300.5])
    assert [p.get_height() for p in first[3].patches] == [0, 0]  # llm failed: no bar height
    # hbm-dram-cxl ran no llm, but keeps its (empty) slot: colours match across panels
    assert [c.get_label() for c in bars(axes[1])] == [*POLICIES, "llm"]
    assert [p.get_height() for p in bars(axes[1])[3].patches] == [0, 0]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["skewed-read", "skewed-write"]


def test_node_share_stacks_one_series_per_node_to_one():
    fig = plots.node_share(runs())
    axes = fig.get_axes()
    assert len(axes) == 4  # 2 topologies x 2 workloads
    for ax, nodes in zip(axes, (2, 2, 3, 3)):
        series = bars(ax)
        assert [c.get_label() for c in series] == [f"node {n}" for n in range(nodes)]
        assert all(len(c.patches) == len(POLICIES) for c in series)
        for k in range(len(POLICIES)):
            assert sum(c.patches[k].get_height() for c in series) == pytest.approx(1.0)
    # dram-cxl, default: misses 10 and 20 -> node 0 serves one third
    assert bars(axes[0])[0].patches[0].get_height() == pytest.approx(1 / 3)


def test_write_saves_non_empty_pngs(tmp_path):
    all_runs = runs()
    paths = plots.write(tmp_path, summary.summarize(all_runs), all_runs)
    assert [p.name for p in paths] == [plots.THROUGHPUT_PNG, plots.NODE_SHARE_PNG]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_no_counters_no_node_plot(tmp_path):
    plain = [make_run(policy=p, value=10.0) for p in POLICIES]
    paths = plots.write(tmp_path, summary.summarize(plain), plain)
    assert [p.name for p in paths] == [plots.THROUGHPUT_PNG]


def timed_runs():
    out = []
    for k, policy in enumerate(("default", "kernel-tiering")):
        for repeat in range(2):
            ops = [(t / 4, int(1000 * t / 4 * (1 + k * t / 40))) for t in range(1, 41)]
            misses = [(t / 4, {0: 10 * t * (1 + k), 1: 10 * t}) for t in range(1, 41)]
            out.append(make_run(policy=policy, repeat=repeat, misses={0: 1, 1: 1},
                                series=Series(tick_s=0.25, warmup_s=4, ops=ops, misses=misses)))
    return out


def test_over_time_plots_draw_a_line_and_a_band_per_policy():
    fig = plots.over_time(timed_runs(), lambda r: r.series.throughput(1.0), "ops/s")
    ax, = fig.axes
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == \
           ["default", "kernel-tiering"]
    tiering = next(line for line in ax.get_lines() if line.get_label() == "kernel-tiering")
    ys = tiering.get_ydata()
    assert len(ys) == 10 and ys[-1] > ys[0]  # it speeds up as it converges
    assert len(ax.collections) == 2  # one min..max band per policy


def test_time_based_runs_get_the_over_time_pngs(tmp_path):
    runs = timed_runs()
    paths = plots.write(tmp_path, summary.summarize(runs), runs, {"dram-cxl": 0})
    assert [p.name for p in paths] == [plots.THROUGHPUT_PNG, plots.NODE_SHARE_PNG, plots.THROUGHPUT_TIME_PNG,
                                       plots.SHARE_TIME_PNG]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
