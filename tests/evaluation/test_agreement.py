"""A re-run's cells beside the recorded evaluation's: medians within 5 %, ratios to first touch within 3 %."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from testbed import cli
from testbed.evaluation import agreement, command, results, summary

from .conftest import make_run


def rows(values: dict[str, list[float]]):
    return summary.summarize([make_run(policy=p, repeat=i, value=v) for p, vs in values.items()
                              for i, v in enumerate(vs)])


RECORDED = rows({"default": [100, 100, 100], "oracle": [200, 200, 200], "damon": [50, 50, 50]})


def test_a_rerun_that_moved_every_figure_alike_keeps_its_ratios_but_not_its_medians():
    cells = agreement.compare(RECORDED, rows({"default": [110] * 3, "oracle": [220] * 3, "damon": [55] * 3}))
    by_policy = {c.policy: c for c in cells}
    assert by_policy["oracle"].median == (200, 220) and by_policy["oracle"].ratio == (2.0, 2.0)
    assert by_policy["oracle"].median_change == pytest.approx(0.10)
    assert by_policy["oracle"].ratio_change == pytest.approx(0.0)
    assert not any(c.holds() for c in cells)  # 10 % is outside 5 %, whatever the ratio did
    assert "medians within 5% of the recorded run: 0 of 3 (largest change 10.0%)" in agreement.verdict(cells)
    assert "ratios to default within 3%: 2 of 2" in agreement.verdict(cells)  # first touch's is 1 by definition
    assert by_policy["default"].ratio == (None, None)


def test_a_cell_holds_only_when_both_its_median_and_its_ratio_do():
    cells = agreement.compare(RECORDED, rows({"default": [102] * 3, "oracle": [190] * 3, "damon": [51] * 3}))
    by_policy = {c.policy: c for c in cells}
    assert by_policy["default"].holds() and by_policy["damon"].holds()
    # oracle: median -5.0 % (inside), ratio 2.0 -> 1.863 (-6.9 %, outside)
    assert by_policy["oracle"].median_change == pytest.approx(-0.05)
    assert not by_policy["oracle"].holds()


def test_a_cell_the_recorded_run_lacks_or_that_failed_is_not_judged():
    rerun = rows({"default": [100] * 3, "oracle": [200] * 3, "damon": [50] * 3, "llm": [99] * 3})
    llm = next(c for c in agreement.compare(RECORDED, rerun) if c.policy == "llm")
    assert llm.median == (None, 99) and llm.median_change is None and llm.holds() is None
    failed = summary.summarize([make_run(policy="default", value=None, ok=False)])
    assert agreement.compare(RECORDED, failed)[0].holds() is None


def test_the_table_prints_both_sides_and_the_verdict_per_cell():
    cells = agreement.compare(RECORDED, rows({"default": [100] * 3, "oracle": [260] * 3, "damon": [50] * 3}))
    out = Console(file=io.StringIO(), width=200, color_system=None, record=True)
    out.print(agreement.table(cells))
    text = out.export_text()
    assert "+30.0%" in text and "yes" in text and "no" in text


def timed(policy: str, repeat: int, seconds: float, slept_s: float, migrated: int | None = None, ops=1e6,
          credited_s: float = 0.0, owed_s: float | None = None):
    """A run whose loop did `ops` operations in `seconds`, `slept_s` of them in the plugin's sleeps and
    `credited_s` in host-CPU waits it counted as paid, for `owed_s` of delays owed (default: what was felt)."""
    run = make_run(policy=policy, repeat=repeat, value=ops / seconds, slept_ns=int(slept_s * 1e9),
                   credited_ns=int(credited_s * 1e9), vmstat={} if migrated is None else {"pgmigrate_success": migrated})
    owed = slept_s + credited_s if owed_s is None else owed_s
    run.counters = {n: results.NodeCounters(delay_ns=int(owed * share * 1e9)) for n, share in ((0, 0.25), (1, 0.75))}
    run.figures.update(ops=ops, seconds=seconds)
    return run


def test_each_operations_time_splits_into_the_felt_delays_and_the_rest():
    runs = [timed("damon", 0, 2.0, 0.5, 100), timed("damon", 1, 3.0, 0.6, 400, credited_s=0.1),
            timed("damon", 2, 4.0, 0.6, 200)]
    s = agreement.split(runs)
    assert s.felt_ns == pytest.approx(600.0)     # median of 500, 600 + 100 credited, 600 ns per operation
    assert s.rest_ns == pytest.approx(2300.0)    # median of 1500, 2300, 3400
    assert s.owed_ns == pytest.approx(600.0)     # both nodes' delay_ns
    assert s.migrated == 200
    # a failed run, or one that reports no operation count, is left out; no kernel counters, no migrations
    failed = make_run(policy="damon", ok=False, value=None)
    assert agreement.split([failed, make_run(policy="damon")]) == agreement.Split(None, None, None, None)


def test_a_loaded_hosts_waits_counted_as_paid_are_felt_delays_not_the_emulators_time():
    # The same placement (owed held) on a host with a core taken: the plugin slept less because it
    # counted the vCPU threads' waits for a CPU as paid. Those waits are felt delays, not the emulator.
    recorded = [timed("default", i, 2.0, 1.0) for i in range(3)]
    loaded = [timed("default", i, 2.05, 0.6, credited_s=0.4) for i in range(3)]
    m = agreement.moved(recorded, loaded)[0]
    assert m.after.felt_ns == pytest.approx(m.before.felt_ns) and m.after.owed_ns == pytest.approx(m.before.owed_ns)
    assert m.after.rest_ns == pytest.approx(1050.0) and m.most() == "emulator"
    out = Console(file=io.StringIO(), width=250, color_system=None, record=True)
    out.print(agreement.moved_table([m]))
    text = out.export_text()
    assert "owed change" in text and "+0.0%" in text


def test_a_cell_that_moved_says_whether_the_sleeps_or_the_emulator_moved_it():
    recorded = [timed(p, i, 2.0, 1.0, 0) for p in ("default", "interleave") for i in range(3)]
    rerun = [timed("default", i, 2.5, 1.0, 0) for i in range(3)]      # the same sleeps, a slower emulator
    rerun += [timed("interleave", i, 2.4, 1.3, 0) for i in range(3)]  # more time asleep: more misses on NVM
    splits = {m.key[2]: m for m in agreement.moved(recorded, rerun)}
    assert splits["default"].most() == "emulator" and splits["interleave"].most() == "delays"
    cells = agreement.compare(summary.summarize(recorded), summary.summarize(rerun))
    line = agreement.moved_verdict(cells, list(splits.values()))
    assert "of the 2 cells that did not hold" in line
    assert "emulator's own time in 1, in the felt delays in 1" in line
    one = [c for c in cells if c.policy == "default"]
    assert agreement.moved_verdict(one, list(splits.values())).startswith("of the 1 cell that did not hold")
    # a cell the recorded evaluation did not run is not split
    assert not agreement.moved(recorded, [timed("oracle", 0, 1.0, 0.5)])


def test_a_rerun_writes_its_agreement_beside_its_results(tmp_path):
    recorded, out = tmp_path / "first", tmp_path / "again"
    out.mkdir()
    results.write(recorded, [timed("default", 0, 1.0, 0.5), timed("oracle", 0, 0.5, 0.2)])
    console = Console(file=io.StringIO(), width=200, color_system=None, record=True)
    assert command._agreement(recorded, out, [timed("default", 0, 1 / 1.03, 0.5), timed("oracle", 0, 1 / 2.12, 0.2)],
                              console)
    written = (out / agreement.TXT_NAME).read_text()
    assert "medians within 5% of the recorded run: 1 of 2 (largest change 6.0%)" in written
    assert "ratios to default within 3%: 1 of 1" in written  # 2.0 -> 2.058: +2.9 %
    assert "where each operation's time went" in written and "moved most" in written
    assert "+6.0%" in console.export_text()


def test_compare_sets_two_finished_evaluations_side_by_side_and_runs_nothing(tmp_path, capsys):
    recorded, again = tmp_path / "first", tmp_path / "again"
    results.write(recorded, [timed("default", 0, 1.0, 0.5)])
    results.write(again, [timed("default", 0, 1.2, 0.5)])
    assert cli.main(["eval", "--compare", str(recorded), str(again)]) == 0
    assert "medians within 5% of the recorded run: 0 of 1" in (again / agreement.TXT_NAME).read_text()
    assert cli.main(["eval", "--compare", str(recorded), str(tmp_path / "nowhere")]) == 2
    assert "holds no results.json" in capsys.readouterr().err


def test_a_rerun_whose_recorded_results_are_gone_says_so_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "again").mkdir()
    assert not command._agreement(tmp_path / "first", tmp_path / "again", [timed("default", 0, 1.0, 0.5)],
                                  Console(file=io.StringIO()))
    assert "nothing to compare the re-run with" in capsys.readouterr().err
    assert not (tmp_path / "again" / agreement.TXT_NAME).exists()
