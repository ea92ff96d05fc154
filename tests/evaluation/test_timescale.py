"""The kernel's policy clocks at the emulated machine's speed: which factor, and what it does to each knob."""

from __future__ import annotations

import pytest

from testbed import policy as placement
from testbed.evaluation import matrix, policies, timescale


def test_auto_is_the_calibrations_k_and_numbers_are_taken_as_given():
    assert timescale.resolve("auto", 8.2213) == 8.221
    assert timescale.resolve("auto", None) == 1.0  # no emulated latency: nothing to scale by
    assert timescale.resolve(1, 8.2) == 1.0 and timescale.resolve(2.5, None) == 2.5


def test_periods_grow_and_rates_shrink_by_the_factor():
    assert timescale.scaled(1000, 8, period=True) == 8000
    assert timescale.scaled(65536, 8, period=False) == 8192
    assert timescale.scaled(1, 100, period=False) == 1  # never zero: zero means "off" to some knobs


def test_numa_balancing_knobs_are_read_scaled_and_written(fake_shell):
    knobs = [*timescale.PERIODS, *timescale.RATES]
    shell = fake_shell({"mountpoint": "\n".join(f"{k} {v}" for k, v in zip(knobs, [1000, 1000, 60000, 1000, 65536])),
                        "echo": "\n".join(f"{k} {v}" for k, v in zip(knobs, [8000, 8000, 480000, 8000, 8192]))})
    changed = timescale.numa_balancing(shell, 8)
    assert changed[f"{timescale.NUMA_DEBUGFS}/scan_delay_ms"] == [1000, 8000]
    assert changed[f"{timescale.NUMA_DEBUGFS}/scan_period_max_ms"] == [60000, 480000]
    assert changed[f"{timescale.NUMA_DEBUGFS}/hot_threshold_ms"] == [1000, 8000]
    assert changed["/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps"] == [65536, 8192]
    written = shell.commands[-1]
    assert f"echo 8000 > {timescale.NUMA_DEBUGFS}/scan_period_min_ms" in written
    assert "echo 8192 > /proc/sys/kernel/numa_balancing_promote_rate_limit_MBps" in written


def test_a_value_the_kernel_did_not_take_is_an_error(fake_shell):
    knobs = [*timescale.PERIODS, *timescale.RATES]
    shell = fake_shell({"mountpoint": "\n".join(f"{k} 1000" for k in knobs),
                        "echo": "\n".join(f"{k} 1000" for k in knobs)})
    with pytest.raises(timescale.TimeScaleError, match="kept .*scan_delay_ms at 1000 \\(asked 8000\\)"):
        timescale.numa_balancing(shell, 8)


def test_a_kernel_without_the_knobs_is_an_error_naming_the_knob(fake_shell):
    shell = fake_shell({"mountpoint": f"{timescale.PERIODS[0]} \n"})
    try:
        timescale.numa_balancing(shell, 8)
    except timescale.TimeScaleError as exc:
        assert "scan_delay_ms" in str(exc)
    else:
        raise AssertionError("no error")


def test_damon_intervals_scale_from_the_policys_own_defaults():
    assert timescale.damon_intervals(1) == {"sample_us": 5000, "aggr_us": 100000, "update_us": 1000000,
                                            "reset_interval_ms": 1000}
    script = policies.damos_script([("migrate_hot", 0, 1 << 30, 0)], time_scale=8)
    assert "echo 40000 > 0/contexts/0/monitoring_attrs/intervals/sample_us" in script
    assert "echo 800000 > 0/contexts/0/monitoring_attrs/intervals/aggr_us" in script
    assert "echo 8000 > 0/contexts/0/schemes/0/quotas/reset_interval_ms" in script


def test_a_placement_policys_daemon_is_paced_like_the_kernels_clocks():
    written = placement.load(matrix.rules_file("write-aware"))
    paced = timescale.placement_limits(written, 13.2)
    assert paced.limits.interval_s == pytest.approx(13.2 * written.limits.interval_s)
    assert paced.limits.bandwidth_mib_s == round(written.limits.bandwidth_mib_s / 13.2)
    # what a round may move stays what it would be on hardware
    per_round = paced.limits.interval_s * paced.limits.bandwidth_mib_s
    assert per_round == pytest.approx(written.limits.interval_s * written.limits.bandwidth_mib_s, rel=0.05)
    assert paced.rules == written.rules and paced.limits.keep_free_mib == written.limits.keep_free_mib
    assert timescale.placement_limits(written, 1) is written
    assert timescale.placement_limits(written, 1e6).limits.interval_s == 3600  # the schema's longest
