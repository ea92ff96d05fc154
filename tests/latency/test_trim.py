"""Trim math: secant steps that bring each node to k times its target, and the per-calibration cache."""

from __future__ import annotations

import json
import os
import time

import pytest

from testbed.latency import calibrate, trim
from testbed.latency.calibrate import Calibration

CAL = Calibration(base_read_ns=300, base_write_ns=320, slope_read=1.08, slope_write=1.06, key="k")


def bent(delays, bend=0.3, knee=2000):
    """A host whose response steepens by `bend` beyond `knee` ns: the line's prediction is wrong out there."""
    def one(base, slope, d):
        return base + slope * d + bend * slope * max(0, d - knee)
    return {n: (one(CAL.base_read_ns, CAL.slope_read, r), one(CAL.base_write_ns, CAL.slope_write, w))
            for n, (r, w) in delays.items()}


@pytest.fixture
def nvm_targets(load_topology):
    return calibrate.targets(load_topology("dram-nvm"))


def test_the_calibrated_line_is_already_trimmed_on_a_straight_host(nvm_targets):
    delays = CAL.delays(nvm_targets)
    straight = bent(delays, bend=0.0)
    assert trim.error(CAL, nvm_targets, straight) < 5e-3
    assert trim.correct(CAL, nvm_targets, delays, straight) == delays


def test_secant_steps_converge_on_a_host_that_bends(nvm_targets):
    delays = CAL.delays(nvm_targets)
    errors = [trim.error(CAL, nvm_targets, bent(delays))]
    for _ in range(trim.ROUNDS):
        delays = trim.correct(CAL, nvm_targets, delays, bent(delays))
        errors.append(trim.error(CAL, nvm_targets, bent(delays)))
    assert errors[0] > 0.2                         # the NVM writes sit far past the knee
    assert errors == sorted(errors, reverse=True)  # each step closes the gap
    assert errors[-1] < trim.TOLERANCE
    felt = bent(delays)
    assert felt[1][1] / felt[0][1] == pytest.approx(900 / 100, rel=trim.TOLERANCE)


def test_a_node_that_feels_too_much_at_its_delay_gets_no_negative_delay(nvm_targets):
    delays = {0: (10, 10), 1: (10, 10)}
    felt = {0: (5000.0, 5000.0), 1: (9e5, 9e5)}
    assert all(d >= 0 for pair in trim.correct(CAL, nvm_targets, delays, felt).values() for d in pair)


def test_trims_are_cached_per_calibration_figures_and_targets(tmp_path, monkeypatch, nvm_targets):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path))
    recalibrated = Calibration(310, 320, 1.08, 1.06, "k")  # same key, new figures
    assert trim._path(CAL, nvm_targets).is_relative_to(tmp_path)
    assert trim._path(CAL, nvm_targets) != trim._path(recalibrated, nvm_targets)
    assert trim._path(CAL, nvm_targets) != trim._path(CAL, {0: (100, 100), 1: (305, 305)})


def test_a_trim_survives_its_json():
    t = trim.Trim({0: (500, 510), 1: (2100, 6400)}, {0: (812.5, 820.0), 1: (2480.0, 7300.5)}, 0.0123, 2)
    assert trim.Trim.from_json(t.to_json()) == t


def _age(path, seconds=trim.RECHECK_AFTER_S + 1):
    """Make a cached trim look fitted or checked `seconds` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


class Host:
    """The calls trim makes of a machine, answered from the bent response, every figure `shift` ns off
    (TCG's own cost per access moved since the calibration)."""

    topology = type("T", (), {"name": "dram-nvm"})()

    def __init__(self, bend: float, shift: float = 0.0):
        self.bend, self.shift, self.delays, self.probes = bend, shift, {}, 0

    def set_delays(self, delays):
        self.delays = dict(delays)

    def run_probe(self, mode, node):
        self.probes += 1
        return bent(self.delays, self.bend)[node][0 if mode == "chase" else 1] + self.shift


@pytest.mark.parametrize("bend, rounds", [(0.0, 1), (0.3, 3)])
def test_fit_stops_once_every_node_is_within_tolerance(nvm_targets, bend, rounds):
    host = Host(bend)
    result = trim.fit(host, CAL, nvm_targets)
    assert result.rounds == rounds and result.error <= trim.TOLERANCE
    assert host.probes == rounds * len(nvm_targets) * 2 * calibrate.REPEATS
    assert result.felt == bent(result.delays, bend)


@pytest.mark.parametrize("err, cached", [(trim.TOLERANCE, True), (0.036, True), (0.1378, False)])
def test_only_a_trim_within_the_goal_is_cached(tmp_path, monkeypatch, nvm_targets, err, cached):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path))
    fitted = trim.Trim({0: (300, 400), 1: (2400, 8400)}, {0: (1300, 1300), 1: (4000, 11800)}, err, 3)
    monkeypatch.setattr(trim, "fit", lambda machine, cal, targets, checked=None: fitted)

    class Machine:
        topology = type("T", (), {"name": "dram-nvm"})()
        delays = None

        def set_delays(self, delays):
            self.delays = delays

    machine = Machine()
    assert trim.ensure(machine, CAL, nvm_targets) == fitted
    assert machine.delays == fitted.delays  # used either way
    assert trim._path(CAL, nvm_targets).exists() is cached


def test_a_cached_trim_that_still_holds_is_checked_once_and_kept(tmp_path, monkeypatch, nvm_targets):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path))
    fitted = trim.ensure(Host(0.3), CAL, nvm_targets)
    path = trim._path(CAL, nvm_targets)
    cached = path.read_text()
    _age(path)
    host = Host(0.3, shift=10.0)  # a little slower today: within RECHECK_ERROR
    again = trim.ensure(host, CAL, nvm_targets)
    assert host.probes == len(nvm_targets) * 2 * calibrate.REPEATS  # one round: the check
    assert again.delays == fitted.delays == host.delays and again.rounds == 1
    assert again.felt == {n: (r + 10, w + 10) for n, (r, w) in fitted.felt.items()}  # today's figures
    assert path.read_text() == cached
    assert time.time() - path.stat().st_mtime < trim.RECHECK_AFTER_S  # checked now


def test_a_trim_measured_within_the_recheck_period_is_used_unchecked(tmp_path, monkeypatch, nvm_targets):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path))
    fitted = trim.ensure(Host(0.3), CAL, nvm_targets)
    path = trim._path(CAL, nvm_targets)
    _age(path, trim.RECHECK_AFTER_S - 60)
    drifted = Host(0.3, shift=-150.0)  # it would fail a check, but none is due
    used = trim.ensure(drifted, CAL, nvm_targets)
    assert used.delays == fitted.delays and used.rounds == fitted.rounds  # as cached
    assert trim.RECHECK_AFTER_S - 70 < used.age_s < trim.RECHECK_AFTER_S  # and said to be that old
    assert fitted.age_s == 0 and trim.Trim.from_json(used.to_json()).age_s == round(used.age_s)
    assert drifted.probes == 0 and drifted.delays == fitted.delays
    assert trim.ensure(drifted, CAL, nvm_targets, recheck_after_s=0).delays != fitted.delays  # asked: checked
    _age(path)
    assert trim.ensure(drifted, CAL, nvm_targets).delays != fitted.delays  # due: checked, and fitted again


def test_a_cached_trim_the_host_has_drifted_from_is_fitted_again_from_it(tmp_path, monkeypatch, nvm_targets):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path))
    fitted = trim.ensure(Host(0.3), CAL, nvm_targets)
    _age(trim._path(CAL, nvm_targets))
    drifted = Host(0.3, shift=-150.0)  # TCG's own cost per access fell: every node feels 150 ns less
    assert trim.check(drifted, CAL, nvm_targets, fitted).error > trim.RECHECK_ERROR
    felt = bent(fitted.delays, 0.3)
    shifted = {n: (r - 150, w - 150) for n, (r, w) in felt.items()}
    assert shifted[1][0] / shifted[0][0] > 1.1 * felt[1][0] / felt[0][0]  # the read ratio bends by > 10 %
    drifted.probes = 0
    again = trim.ensure(drifted, CAL, nvm_targets)
    assert again.error <= trim.TOLERANCE and again.delays != fitted.delays and drifted.delays == again.delays
    assert 1 < drifted.probes // (len(nvm_targets) * 2 * calibrate.REPEATS) <= trim.ROUNDS
    assert trim.Trim.from_json(json.loads(trim._path(CAL, nvm_targets).read_text())).delays == again.delays


def _trim(error: float) -> trim.Trim:
    return trim.Trim({0: (500, 600), 1: (3000, 10000)}, {0: (1400.0, 1500.0), 1: (4700.0, 13800.0)}, error, 3)


@pytest.mark.parametrize("fitted, checked, kept", [
    (0.02, 0.049, True),    # within RECHECK_ERROR outright
    (0.02, 0.08, False),    # the level moved 6 % since a close fit: fit again
    (0.0755, 0.09, True),   # a noisy host's best fit (this host: 5.7-7.6 % after 3 rounds), checked as close
    (0.0755, 0.13, False),  # beyond the goal it was cached under
    (0.098, 0.11, False),
])
def test_a_check_is_judged_against_what_the_fit_came_to(fitted, checked, kept):
    assert trim.holds(_trim(fitted), _trim(checked)) is kept


def test_a_cached_trim_from_a_noisy_host_checked_as_close_is_kept(tmp_path, monkeypatch, nvm_targets):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path))
    fitted = trim.ensure(Host(0.3), CAL, nvm_targets)
    noisy = trim.Trim(fitted.delays, fitted.felt, 0.07, 3)  # what the fit came to on a noisy host
    trim._path(CAL, nvm_targets).write_text(json.dumps(noisy.to_json()))
    _age(trim._path(CAL, nvm_targets))
    host = Host(0.3, shift=60.0)  # every node ~5 % slower than at the fit: within 5 % of its 7 %
    again = trim.ensure(host, CAL, nvm_targets)
    assert trim.RECHECK_ERROR < again.error <= noisy.error + trim.RECHECK_ERROR
    assert again.rounds == 1 and host.probes == len(nvm_targets) * 2 * calibrate.REPEATS  # the check only
