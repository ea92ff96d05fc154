"""Summary math against hand-computed medians, quartiles, ratios and shares; the files it writes."""

from __future__ import annotations

import csv
import io

import pytest
from rich.console import Console

from testbed.evaluation import summary
from testbed.evaluation.results import Run
from testbed.evaluation.series import Series

from .conftest import make_run


def runs():
    out = []
    # default: 100, 120, 110 -> median 110, quartiles (inclusive) 105 and 115
    for r, (v, fast) in enumerate([(100, 40), (120, 60), (110, 50)]):
        out.append(make_run(policy="default", repeat=r, value=v, misses={0: fast, 1: 100 - fast}))
    # oracle: 200, 260, 210 -> median 210, ratio 210/110, clear of default's 100..120
    for r, (v, fast) in enumerate([(200, 90), (260, 95), (210, 80)]):
        out.append(make_run(policy="oracle", repeat=r, value=v, misses={0: fast, 1: 100 - fast}))
    # interleave: 115, 90, one failure -> median 102.5, overlaps default
    out.append(make_run(policy="interleave", repeat=0, value=115, misses={0: 50, 1: 50}))
    out.append(make_run(policy="interleave", repeat=1, value=90, misses={0: 50, 1: 50}))
    out.append(make_run(policy="interleave", repeat=2, value=None, ok=False, error="boom"))
    # llm: all below default
    out.append(make_run(policy="llm", repeat=0, value=50))
    # another workload without a default: no ratios
    out.append(make_run(workload="skewed-write", policy="oracle", value=7))
    return out


def by_policy(rows, workload="skewed-read"):
    return {r.policy: r for r in rows if r.workload == workload}


def test_medians_spreads_and_ratios_by_hand():
    rows = by_policy(summary.summarize(runs()))
    d, o, i, llm = rows["default"], rows["oracle"], rows["interleave"], rows["llm"]
    assert (d.median, d.minimum, d.maximum, d.q1, d.q3) == (110, 100, 120, 105, 115)
    assert d.ratio == 1 and d.clear == ""
    assert (o.median, o.q1, o.q3) == (210, 205, 235)
    assert o.ratio == pytest.approx(210 / 110) and o.clear == "above"
    assert (i.runs, i.failed, i.median) == (3, 1, 102.5)
    assert i.ratio == pytest.approx(102.5 / 110) and i.clear == "overlap"
    assert (llm.q1, llm.q3, llm.clear) == (50, 50, "below")


def test_fast_node_share_is_the_median_share_of_misses():
    rows = by_policy(summary.summarize(runs()))
    assert rows["default"].fast_share == pytest.approx(0.5)
    assert rows["oracle"].fast_share == pytest.approx(0.9)
    assert rows["llm"].fast_share is None  # no counters
    other = by_policy(summary.summarize(runs(), fast_nodes={"dram-cxl": 1}))
    assert other["oracle"].fast_share == pytest.approx(0.1)


def test_no_baseline_no_ratio():
    row = by_policy(summary.summarize(runs()), "skewed-write")["oracle"]
    assert row.median == 7 and row.ratio is None and row.clear == ""


def test_rows_are_grouped_in_the_order_of_first_appearance():
    late = make_run(workload="skewed-read", policy="damon", value=1)
    keys = [(r.workload, r.policy) for r in summary.summarize([*runs(), late])]
    assert keys == [("skewed-read", p) for p in ("default", "oracle", "interleave", "llm", "damon")] + [
        ("skewed-write", "oracle")]


def test_write_prints_and_saves_the_table(tmp_path):
    rows = summary.summarize(runs())
    console = Console(file=io.StringIO(), width=200, color_system=None)
    summary.write(tmp_path, rows, console)
    text = (tmp_path / "summary.txt").read_text()
    assert "1.909" in text and "100..120" in text and "2/3" in text and "above" in text and "90.0%" in text
    assert "1.909" in console.file.getvalue()
    parsed = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert len(parsed) == len(rows)
    oracle = next(p for p in parsed if p["policy"] == "oracle" and p["workload"] == "skewed-read")
    assert float(oracle["median"]) == 210 and float(oracle["ratio"]) == pytest.approx(210 / 110)
    assert next(p for p in parsed if p["policy"] == "llm")["fast_share"] == ""


def test_figures_beside_the_headline_get_rows_of_their_own():
    out = []
    for policy, p99, batch in (("default", 40.0, 100.0), ("oracle", 20.0, 60.0)):
        out.append(Run(topology="hybrid-cores", workload="mixed", policy=policy, repeat=0, seed=1, primary="p99_ms",
                       also=["batch_ops_per_s"], figures={"p99_ms": p99, "batch_ops_per_s": batch}))
    rows = summary.summarize(out)
    assert [(r.figure, r.policy) for r in rows] == [("p99_ms", "default"), ("p99_ms", "oracle"),
                                                    ("batch_ops_per_s", "default"), ("batch_ops_per_s", "oracle")]
    assert [r.ratio for r in rows] == [1.0, 0.5, 1.0, 0.6]
    assert [r.clear for r in rows] == ["", "below", "", "below"]


def test_interrupted_runs_are_neither_figures_nor_failures():
    rows = summary.summarize([make_run(value=10.0), make_run(repeat=1, value=None, ok=False, interrupted=True)])
    assert rows[0].runs == 1 and rows[0].failed == 0


def test_what_the_kernel_did_is_summarized_per_policy():
    runs = [make_run(policy="kernel-tiering", repeat=r, value=10.0,
                     vmstat={"numa_hint_faults": 100 * (r + 1), "pgpromote_success": 7 + r, "pgdemote_kswapd": 4,
                             "pgdemote_direct": 1}, kthread_cpu_s={"kdamond": 0.0, "kswapd": 1.0},
                     vcpu_ran_s={0: 9.0, 1: 1.0 + r})
            for r in range(3)] + [make_run(policy="default", value=10.0)]
    rows = {r.policy: r for r in summary.summarize(runs)}
    tiering = rows["kernel-tiering"]
    assert (tiering.hint_faults, tiering.promoted, tiering.demoted, tiering.kdamond_s) == (200, 8, 5, 0.0)
    assert rows["default"].hint_faults is None  # recorded nothing: not a zero
    assert summary._kernel_cell(tiering) == "200/8/5, 0.0"
    assert tiering.others_share == pytest.approx(2 / 11)  # the median of 1/10, 2/11 and 3/12
    assert tiering.workload_sys_share is None  # the workload reported no CPU time


def test_the_workloads_time_in_the_kernel_is_its_share_of_its_own_cpu():
    runs = [make_run(policy="kernel-tiering", repeat=r, value=10.0, vmstat={"numa_hint_faults": 5})
            for r in range(3)]
    for run, (user, sys) in zip(runs, [(9.0, 1.0), (6.0, 4.0), (8.0, 2.0)]):
        run.figures.update(user_s=user, sys_s=sys)
    runs[2].ok = False  # a failed run's figures are not counted
    row = summary.summarize(runs)[0]
    assert row.workload_sys_share == pytest.approx(0.25)  # the median of 0.1 and 0.4
    assert summary._kernel_cell(row) == "5/0/0, 0.0, 25.0% in kernel"


def test_a_time_based_runs_share_is_its_steady_state_share():
    series = Series(tick_s=1, warmup_s=1, misses=[(1.0, {0: 0, 1: 100}), (2.0, {0: 90, 1: 110})])
    run = make_run(misses={0: 90, 1: 110}, series=series)
    assert run.node_share()[0] == pytest.approx(0.45) and run.fast_share(0) == pytest.approx(0.9)
    assert summary.summarize([run], fast_nodes={"dram-cxl": 0})[0].fast_share == pytest.approx(0.9)


def test_an_enforcing_policys_daemon_gets_a_column_only_where_one_ran(tmp_path):
    plain = summary.summarize(runs())
    assert all(r.agent_moved_mib is None for r in plain)
    assert "agent: moved MiB" not in _text(summary.table(plain))
    enforced = [make_run(policy="rules:write-aware", value=v, vmstat={"numa_hint_faults": 0},
                         enforcer={"rounds": 5, "moved_mib": m, "cpu_percent": c, "steady_cpu_percent": c / 4})
                for v, m, c in ((150.0, 400.0, 12.0), (160.0, 420.0, 8.0), (155.0, 380.0, 10.0))]
    rows = summary.summarize([*runs(), *enforced])
    row = next(r for r in rows if r.policy == "rules:write-aware")
    assert (row.agent_moved_mib, row.agent_cpu_percent, row.agent_steady_cpu_percent) == (400.0, 10.0, 2.5)
    assert "400, 10 % (2.5 % steady)" in _text(summary.table(rows))


def _text(table) -> str:
    console = Console(file=io.StringIO(), width=260, color_system=None)
    console.print(table)
    return console.file.getvalue()


def test_the_hot_set_on_the_fast_node_is_the_median_of_the_last_censuses():
    def census(fast: int) -> Series:
        return Series(tick_s=1, census=[(1.0, {"hot": {1: 100}, "cold": {}}),
                                        (2.0, {"hot": {0: fast, 1: 100 - fast}, "cold": {}})])
    runs = [make_run(policy="kernel-tiering", repeat=r, series=census(f)) for r, f in enumerate((20, 60, 70))]
    rows = {r.policy: r for r in summary.summarize([*runs, make_run(policy="default")], fast_nodes={"dram-cxl": 0})}
    assert rows["kernel-tiering"].hot_on_fast == pytest.approx(0.6) and rows["default"].hot_on_fast is None
    text = Console(file=io.StringIO(), width=250, color_system=None)
    text.print(summary.table(list(rows.values())))
    assert "hot set on fast" in text.file.getvalue() and "60.0%" in text.file.getvalue()
