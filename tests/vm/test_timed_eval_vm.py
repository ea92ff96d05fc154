"""A time-based evaluation end to end (tiny-timed: dram-cxl, default vs kernel-tiering, 8 s timed phase).

Checks what the fair-baselines work adds: each run's series (the workload's ticks and the plugin's
per-node misses on the same clock), the steady-state headline, the kernel's counters over the timed
phase (NUMA balancing acted under kernel-tiering and not under first touch), the kernel's clocks
(and tlb-reach's) scaled as the matrix asked and read back from the guest, the workload's census of
where its hot set lives, and the over-time plots.
"""

from __future__ import annotations

import itertools

import pytest

from testbed.evaluation import manifest, matrix, results, runner, summary, timescale

pytestmark = pytest.mark.vm
# tiny-timed's hot set in 4 KiB pages, from the matrix the test runs
HOT_PAGES = matrix.load(matrix.resolve("tiny-timed")).params_of("skewed-read")["hot_mib"] * 256


@pytest.fixture(scope="module")
def timed(run_eval):
    return run_eval("tiny-timed", timeout=900)


def test_each_run_carries_its_series_and_steady_state(timed):
    runs = results.read(timed[0])
    assert [r.policy for r in runs] == ["default", "kernel-tiering"] and all(r.ok for r in runs), \
        [r.error for r in runs]
    for run in runs:
        s = run.series
        assert s is not None and s.tick_s == 0.25 and s.warmup_s == 4
        assert 7.9 <= s.ops[-1][0] <= 9 and len(s.ops) >= 24  # ~32 ticks of 250 ms over 8 s
        assert all(b[1] > a[1] for a, b in itertools.pairwise(s.ops))  # progress every tick
        assert len(s.misses) >= 24 and s.misses[-1][0] >= 7
        assert sum(s.misses[-1][1][n] for n in (0, 1)) > 0  # the plugin counted on the same ticks
        assert run.primary == runner.STEADY and run.figures[runner.STEADY] > 0
        assert run.figures[runner.STEADY] == pytest.approx(s.steady_rate())
        assert run.figures["ops"] == s.ops[-1][1]  # the workload's own total matches its last tick


def test_the_kernels_counters_show_which_policy_acted(timed):
    default, tiering = results.read(timed[0])
    assert {"numa_hint_faults", "pgpromote_success", "pgmigrate_success"} <= set(default.vmstat)
    assert {"pgsteal_direct", "workingset_refault_file", "pgmajfault"} <= set(default.vmstat)  # reclaim's too
    assert default.vmstat["numa_hint_faults"] == 0  # first touch: balancing off
    assert tiering.vmstat["numa_hint_faults"] > 0  # tiering mode scanned and took hint faults
    assert set(tiering.kthread_cpu_s) == {"kdamond", "kswapd"}
    # each node's huge pages as the timed phase began; the matrix asks for base pages only (huge_pages =
    # 0), so the workload's 256 MiB buffer has none: what is left is the guest's own, a few MiB
    for run in (default, tiering):
        assert set(run.huge_mib) == {0, 1} and all(mib < 32 for mib in run.huge_mib.values()), run.huge_mib


def test_the_kernels_clocks_were_scaled_and_the_guest_took_them(timed):
    record = manifest.read(timed[0] / "manifest.json").plugin["dram-cxl"]["time_scale"]
    assert record["requested"] == 2 and record["factor"] == 2
    knobs = record["knobs"]
    delay = knobs[f"{timescale.NUMA_DEBUGFS}/scan_delay_ms"]
    assert delay[1] == 2 * delay[0]
    rate = knobs["/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps"]
    assert rate[1] == round(rate[0] / 2)
    # tlb-reach on the modelled clock too, started after the calibration (bound() fails if it did not run)
    assert manifest.read(timed[0] / "manifest.json").plugin["dram-cxl"]["tlb_reach"] == \
        {"modelled_ms": 5, "host_ms": 10}


def test_the_workload_counts_where_its_hot_set_lives(timed):
    default, tiering = results.read(timed[0])
    for run in (default, tiering):  # every 8 ticks (2 s) and at the end; 32 MiB hot: 4096 pages sampled
        assert len(run.series.census) >= 4 and run.series.census[-1][0] >= 7.9
        # a page the kernel is migrating has no node; the census asks about it again, and a page still
        # moving after that goes uncounted, up to 4 here (before it asked again, CI saw a census come short)
        assert all(4096 - 4 <= sum(where["hot"].values()) <= 4096 for _, where in run.series.census)
    # each run began with the fast node settled to the matrix's 128 MiB free (a run leaves it with less)
    assert all(124 <= r.fast_free_mib <= 132 for r in (default, tiering)), [r.fast_free_mib for r in (default, tiering)]
    # first touch filled the fast node before it reached the hot tail, and nothing moves it there: what
    # of the tail lands on the fast node is a little (5.4 % of the hot set once, 2026-12-04) plus what
    # reclaim took there mid-touch and so gave back to the touch (a run after boot: kswapd stole 3,149
    # file pages, 12.3 MiB, during the touch and 25 % of the hot set sat on the fast node; a CI
    # rehearsal saw 34.5 %), against the whole hot set for a policy that moves it
    stolen = sum(default.touch_vmstat.get(f"pgsteal_{who}", 0) for who in ("kswapd", "direct"))
    assert default.hot_placed(0) * HOT_PAGES <= 0.10 * HOT_PAGES + stolen, (default.hot_placed(0), stolen)
    assert default.series.final_placed(1) >= 1 - default.hot_placed(0) - 0.01
    rows = {r.policy: r for r in summary.summarize([default, tiering], {"dram-cxl": 0})}
    assert rows["default"].hot_on_fast == default.hot_placed(0)


def test_summary_and_over_time_plots(timed):
    out, stdout = timed
    names = {p.name for p in out.iterdir()}
    assert {"throughput-time.png", "share-time.png", "hot-time.png", "summary.csv"} <= names
    assert runner.STEADY in (out / "summary.txt").read_text() and "ops_per_s" in stdout
