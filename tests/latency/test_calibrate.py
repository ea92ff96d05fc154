"""Calibration math: a line through two delays, and delays that give the topology's ratios."""

from __future__ import annotations

from dataclasses import replace

import pytest

from testbed.latency import calibrate
from testbed.latency.calibrate import MIN_DELAY_NS, Calibration, CalibrationError


def felt(cal: Calibration, delays: dict[int, tuple[int, int]]) -> dict[int, tuple[float, float]]:
    """What the guest would measure if TCG followed the calibrated line exactly."""
    return {n: (cal.base_read_ns + cal.slope_read * r, cal.base_write_ns + cal.slope_write * w)
            for n, (r, w) in delays.items()}


def test_fit_recovers_base_and_slope():
    base, slope = calibrate.fit(300 + 1.1 * 500, 300 + 1.1 * 2000)
    assert base == pytest.approx(300)
    assert slope == pytest.approx(1.1)


def test_from_measurements_builds_a_calibration():
    cal = calibrate.from_measurements((830, 2460), (850, 2440), "k")
    assert cal.slope_read == pytest.approx(1630 / 1500)
    assert cal.base_write_ns == pytest.approx(850 - 500 * 1590 / 1500)
    assert cal.key == "k"


@pytest.mark.parametrize("read, write", [((900, 950), (850, 2440)),      # reads barely slowed down
                                         ((830, 2460), (2400, 2440)),    # writes too slow at the low delay
                                         ((830, 9000), (850, 2440))])    # reads far slower than injected
def test_implausible_measurements_are_refused(read, write):
    with pytest.raises(CalibrationError, match="implausible"):
        calibrate.from_measurements(read, write, "k")


@pytest.mark.parametrize("name", ["dram-cxl", "dram-nvm", "hbm-dram-cxl"])
def test_delays_give_the_topology_ratios_reads_and_writes(load_topology, name):
    targets = calibrate.targets(load_topology(name))
    cal = Calibration(base_read_ns=310, base_write_ns=340, slope_read=1.07, slope_write=1.05, key="k")
    delays = cal.delays(targets)
    seen = felt(cal, delays)
    ref = calibrate.reference_node(load_topology(name))
    for node, (t_r, t_w) in targets.items():
        # rounding the delays to whole ns moves a ratio by well under 0.5 %
        assert seen[node][0] / seen[ref][0] == pytest.approx(t_r / targets[ref][0], rel=5e-3)
        assert seen[node][1] / seen[ref][1] == pytest.approx(t_w / targets[ref][1], rel=5e-3)
    assert min(d for pair in delays.values() for d in pair) >= MIN_DELAY_NS - 1


def test_nvm_writes_owe_far_more_than_reads(load_topology):
    cal = Calibration(310, 340, 1.07, 1.05, "k")
    delays = cal.delays(calibrate.targets(load_topology("dram-nvm")))
    assert delays[1][1] > 2.5 * delays[1][0] > 2.5 * delays[0][0]


def test_a_floor_on_k_slows_every_node_alike(load_topology):
    targets = calibrate.targets(load_topology("dram-nvm"))
    cal = Calibration(310, 340, 1.07, 1.05, "k")
    least = cal.scale(targets)
    floored = replace(cal, min_scale=2 * least)
    assert replace(cal, min_scale=least / 2).scale(targets) == least  # a floor below the least changes nothing
    assert floored.scale(targets) == 2 * least
    seen = felt(floored, floored.delays(targets))
    for node, (t_r, t_w) in targets.items():  # each node felt 2k times its target, reads and writes
        assert seen[node][0] == pytest.approx(2 * least * t_r, abs=2)
        assert seen[node][1] == pytest.approx(2 * least * t_w, abs=2)


def test_targets_are_each_nodes_hmat_from_its_nearest_cpus(load_topology):
    assert calibrate.targets(load_topology("dram-nvm")) == {0: (100, 100), 1: (305, 900)}
    assert calibrate.reference_node(load_topology("dram-nvm")) == 0


def test_topology_without_hmat_has_no_targets(write_topology):
    from testbed.topology import load

    path = write_topology('description = "one node of DRAM and nothing else worth describing here"\n'
                          '[[nodes]]\nid = 0\nkind = "dram"\nsize = "512M"\ncpus = [0]\n', name="flat")
    with pytest.raises(CalibrationError, match="no HMAT latencies"):
        calibrate.targets(load(path))


def test_calibration_is_cached_by_key(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path))
    cal = Calibration(310.5, 340.25, 1.07, 1.05, "abc123")
    assert calibrate.load("abc123") is None
    path = calibrate.save(cal)
    assert path.is_relative_to(tmp_path)
    assert calibrate.load("abc123") == cal
    assert calibrate.load("other") is None


class TwoLevelHost:
    """A host whose own cost per access jumps from 500 to 1000 ns after its fourth run, as measured here."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def run_probe(self, mode, node):
        self.calls.append((mode, node))
        own = 500 if len(self.calls) <= 4 else 1000
        return own + {0: 1000, 1: 3000}[node]


def test_felt_runs_every_node_back_to_back_in_alternating_order():
    host = TwoLevelHost()
    felt = calibrate.felt(host, [0, 1], repeats=2)
    assert host.calls == [("chase", 0), ("chase", 1), ("store", 0), ("store", 1),
                          ("chase", 1), ("chase", 0), ("store", 1), ("store", 0)]
    # node by node (all of node 0's runs first) would give node 0 the low level and node 1 the high one
    assert felt == {0: (1750.0, 1750.0), 1: (3750.0, 3750.0)}


def test_a_calibration_made_with_tlb_reach_is_kept_apart():
    # Its flushes change TCG's own cost per access: a calibration without it does not serve it.
    from testbed.latency.emulated import CacheModel
    plain = calibrate.key("image", CacheModel())
    assert plain == calibrate.key("image", CacheModel(), tlb_reach_ms=0)
    assert len({plain, calibrate.key("image", CacheModel(), 10), calibrate.key("image", CacheModel(), 20)}) == 3
