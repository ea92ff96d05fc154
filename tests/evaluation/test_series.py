"""A run's time series: interpolation, rates over windows, the steady state after the warm-up, shares."""

from __future__ import annotations

import pytest

from testbed.evaluation import series
from testbed.evaluation.series import Series

OPS = [(0.25, 100), (0.5, 200), (1.0, 400), (2.0, 1400), (3.0, 2400)]


def test_cumulative_points_interpolate_from_zero_and_stop_at_the_last_point():
    assert series.at(OPS, 0.125) == pytest.approx(50)
    assert series.at(OPS, 1.5) == pytest.approx(900)
    assert series.at(OPS, 3.0) == 2400
    assert series.at(OPS, 3.5) is None and series.at([], 0) is None


def test_rate_over_a_window_and_the_whole_run():
    assert series.rate(OPS, 1.0, 2.0) == pytest.approx(1000)
    assert series.rate(OPS, 0) == pytest.approx(800)
    assert series.rate(OPS, 2.5, 2.5) is None
    assert series.rate(OPS, 2.0, 4.0) is None  # not covered: no made-up figure


def test_bins_cover_only_what_the_points_reach():
    assert series.binned(OPS, 1.0) == [(1.0, pytest.approx(400)), (2.0, pytest.approx(1000)),
                                       (3.0, pytest.approx(1000))]
    assert series.binned(OPS, 2.0) == [(2.0, pytest.approx(700))]


def test_steady_state_is_measured_after_the_warm_up_only():
    s = Series(tick_s=0.25, warmup_s=1.0, ops=OPS)
    assert s.steady_rate() == pytest.approx(1000)  # the slow first second is left out
    assert series.rate(OPS, 0) < s.steady_rate()


def test_fast_node_share_over_time_and_in_the_steady_state():
    s = Series(tick_s=0.5, warmup_s=1.0, misses=[(1.0, {0: 10, 1: 90, -1: 7}), (2.0, {0: 110, 1: 90, -1: 9})])
    assert s.share(0, 1.0) == [(1.0, pytest.approx(0.1)), (2.0, pytest.approx(1.0))]  # promoted in the 2nd second
    assert s.steady_share(0) == pytest.approx(1.0)
    assert s.steady_share(1) == pytest.approx(0.0)  # node -1 (outside every node) never counts


def test_the_shares_end_with_the_workloads_loop_not_with_the_harness_samples():
    # the plugin is sampled on through the workload's exit (the kernel freeing its buffer, on the fast
    # node here) and the harness's commands after it: not the loop's traffic
    loop = [(1.0, {0: 10, 1: 90}), (2.0, {0: 20, 1: 180}), (3.0, {0: 30, 1: 270})]
    s = Series(tick_s=1.0, warmup_s=1.0, ops=OPS, misses=[*loop, (4.0, {0: 130, 1: 290})])
    assert s.loop_end == 3.0
    assert s.steady_share(0) == pytest.approx(0.1)
    assert [t for t, _ in s.share(0, 1.0)] == [1.0, 2.0, 3.0]
    assert Series(tick_s=1.0, misses=loop).steady_share(0) == pytest.approx(0.1)  # no ticks: every sample


def test_a_series_round_trips_through_json_with_integer_nodes():
    s = Series(tick_s=0.25, warmup_s=2, ops=OPS, misses=[(0.5, {0: 1, 1: 2})])
    back = Series.model_validate_json(s.model_dump_json())
    assert back == s and back.misses[0][1] == {0: 1, 1: 2}


def test_the_hot_set_on_a_node_at_each_census_on_the_tick_grid():
    s = Series(tick_s=0.25, census=[(10.003, {"hot": {1: 300, 0: 100}, "cold": {0: 50}}),
                                    (20.251, {"hot": {0: 400}, "cold": {0: 40, 1: 10}}),
                                    (21.0, {"hot": {}, "cold": {}})])  # nothing located: no point
    assert s.placed(0) == [(10.0, pytest.approx(0.25)), (20.25, pytest.approx(1.0))]
    assert s.placed(1, "cold") == [(10.0, 0.0), (20.25, pytest.approx(0.2))]
    assert s.final_placed(0) == pytest.approx(1.0) and Series(tick_s=1).final_placed(0) is None
    back = Series.model_validate_json(s.model_dump_json())
    assert back.census[0][1]["hot"] == {1: 300, 0: 100}  # nodes come back as integers
