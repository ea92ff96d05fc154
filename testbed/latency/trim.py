"""Trim: close the loop on one topology's calibrated delays.

The calibration is a line through two delays (500 and 2000 ns) on the fastest
node, and a slow node's delays lie far beyond it: dram-nvm's writes owe about
6,500 ns.  On some hosts TCG's response bends out there (a CI host felt NVM
reads 20 % and writes 29 % slower than the line predicted, while DRAM felt
exactly what it should).  So, once per topology and calibration, we set the
predicted delays, measure what every node feels, and correct each delay by its
error over the calibrated slope (a secant step) until every node feels k times
its target within TOLERANCE, for at most ROUNDS rounds.  A trim that came within
CACHE_ERROR (the testbed's 10 % goal for felt ratios) is cached beside the calibration
(`--recalibrate` measures both again); one that did not (a host whose load moved while it
measured) serves this machine only, and the next machine fits again, so a bad moment is
not frozen into every later run.  On a machine that feels initiators apart (two-socket under a
TCG thread per vCPU) every (initiator, node) is trimmed as a node is, measured from a CPU of that
initiator.

A cached trim is not trusted blindly either: TCG's own cost per access moves between boots
and hours on one host (here a node fitted at 1,075 ns felt 877-1,004 ns at the same delays two
hours later, and calibrations then gave slopes of 1.14-1.17 against the cached 1.28), and a shift that
every node feels alike bends every slow/fast ratio.  So every machine measures the cached
delays once more, and the fit goes on from them (that measurement its first round, the new fit
replacing the cached one) where the check is off by more than CACHE_ERROR, or by more than
RECHECK_ERROR beyond what the fit itself came to.  Beyond, not absolute: on a noisy host no fit
comes within RECHECK_ERROR (here, on a later day, four topologies' fits stopped 5.7-7.6 % off after
three rounds), and an absolute threshold then refitted in every boot, three rounds of probes
(~5 minutes under one TCG thread) to land on another fit no closer than the cached one.  And a trim
fitted or checked in the last RECHECK_AFTER_S is not checked again: the same host, within the half hour
one long matrix spends in one boot unchecked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..files import write_atomic
from ..image import cache_root
from .calibrate import Calibration, Targets, felt
from .emulated import DelayKey, Delays, EmulatedMachine, key_text, parse_key

TOLERANCE = 0.03
CACHE_ERROR = 0.10
# A level every node keeps within 5 % bends no ratio by more than ~10 %, the testbed's goal: a uniform
# shift of the level by d moves the trim's error by at most d.
RECHECK_ERROR = 0.05
# A check is one round of probes (~100 s under one TCG thread here): a trim fitted or checked within
# this long is used as it is, the same exposure to drift as the later runs of a half-hour matrix in
# one boot, which are never checked.
RECHECK_AFTER_S = 30 * 60

log = logging.getLogger(__name__)
ROUNDS = 3

Felt = dict[DelayKey, tuple[float, float]]  # node or (initiator, node) -> (read ns, write ns) the guest measured


@dataclass(frozen=True)
class Trim:
    """Delays that made each node feel k times its target, how close the last round came, and how many
    seconds before this machine that round was (0: measured in it)."""

    delays: Delays
    felt: Felt
    error: float
    rounds: int
    age_s: float = 0.0

    def to_json(self) -> dict:
        return {"delays_ns": {key_text(n): list(d) for n, d in self.delays.items()},
                "felt_ns": {key_text(n): [round(r, 1), round(w, 1)] for n, (r, w) in self.felt.items()},
                "error": round(self.error, 4), "rounds": self.rounds, "age_s": round(self.age_s)}

    @classmethod
    def from_json(cls, doc: dict) -> Trim:
        return cls({parse_key(n): (int(r), int(w)) for n, (r, w) in doc["delays_ns"].items()},
                   {parse_key(n): (float(r), float(w)) for n, (r, w) in doc["felt_ns"].items()},
                   float(doc["error"]), int(doc["rounds"]), float(doc.get("age_s", 0.0)))


def wanted(cal: Calibration, targets: Targets) -> Felt:
    """What each node should feel: k times its target, reads and writes."""
    k = cal.scale(targets)
    return {n: (k * r, k * w) for n, (r, w) in targets.items()}


def error(cal: Calibration, targets: Targets, felt: Felt) -> float:
    """The largest relative gap between what a node felt and what it should."""
    want = wanted(cal, targets)
    return max(abs(felt[n][i] / want[n][i] - 1) for n in targets for i in (0, 1))


def correct(cal: Calibration, targets: Targets, delays: Delays, felt: Felt) -> Delays:
    """One secant step: move each delay by its node's error over the calibrated slope."""
    want = wanted(cal, targets)
    return {n: (max(0, round(r + (want[n][0] - felt[n][0]) / cal.slope_read)),
                max(0, round(w + (want[n][1] - felt[n][1]) / cal.slope_write)))
            for n, (r, w) in delays.items()}


def measure(machine: EmulatedMachine, delays: Delays) -> Felt:
    """Median chase and store ns per node with `delays` set (runs interleaved across nodes)."""
    machine.set_delays(delays)
    return felt(machine, sorted(delays))


def fit(machine: EmulatedMachine, cal: Calibration, targets: Targets,
        checked: Trim | None = None) -> Trim:
    """Correct the delays until every node is within TOLERANCE, for at most ROUNDS rounds: from the
    calibrated line's delays, or on from `checked` (delays measured once already, its round 1)."""
    best = checked
    delays = correct(cal, targets, checked.delays, checked.felt) if checked else cal.delays(targets)
    for rounds in range(2 if checked else 1, ROUNDS + 1):
        felt = measure(machine, delays)
        trial = Trim(delays, felt, error(cal, targets, felt), rounds)
        if best is None or trial.error < best.error:
            best = trial
        if trial.error <= TOLERANCE:
            break
        delays = correct(cal, targets, delays, felt)
    return Trim(best.delays, best.felt, best.error, rounds)


def _path(cal: Calibration, targets: Targets) -> Path:
    # the calibration's figures, not only its key: a recalibration makes earlier trims stale
    what = json.dumps([asdict(cal), sorted(targets.items())])
    digest = hashlib.sha256(what.encode()).hexdigest()[:16]
    return cache_root() / "latency" / "trim" / f"{digest}.json"


def check(machine: EmulatedMachine, cal: Calibration, targets: Targets,
          cached: Trim) -> Trim:
    """`cached`'s delays measured in `machine` now: one round, with what every node feels today."""
    felt_now = measure(machine, cached.delays)
    return Trim(cached.delays, felt_now, error(cal, targets, felt_now), 1)


def holds(cached: Trim, checked: Trim) -> bool:
    """Whether a cached trim, measured again, still serves: within the goal it was cached under, and
    the level moved no more than RECHECK_ERROR since the fit (or within RECHECK_ERROR outright)."""
    return checked.error <= max(RECHECK_ERROR, min(CACHE_ERROR, cached.error + RECHECK_ERROR))


def ensure(machine: EmulatedMachine, cal: Calibration, targets: Targets,
           force: bool = False, recheck_after_s: float = RECHECK_AFTER_S) -> Trim:
    """Set this topology's trimmed delays in `machine`: the cached ones if they still hold here (checked),
    else fitted (on from the cached ones, where there are some) and cached if they came within CACHE_ERROR.
    A cached trim fitted or checked less than `recheck_after_s` ago is used without a check. The Trim
    returned has this machine's figures, or the last check's where none was made."""
    path = _path(cal, targets)
    cached = Trim.from_json(json.loads(path.read_text())) if path.exists() and not force else None
    if cached is not None and (age := time.time() - path.stat().st_mtime) < recheck_after_s:
        log.info("%s: the cached trim was measured %.0f s ago; used unchecked", machine.topology.name, age)
        machine.set_delays(cached.delays)
        return replace(cached, age_s=age)
    checked = check(machine, cal, targets, cached) if cached is not None else None
    if checked is not None and holds(cached, checked):
        trim = checked
        os.utime(path)  # measured now: the next boots within RECHECK_AFTER_S need not measure it again
    else:
        if checked is not None:
            log.warning("%s: the cached trim is %.1f %% off here now; fitting it again",
                        machine.topology.name, 100 * checked.error)
        trim = fit(machine, cal, targets, checked)
        if trim.error <= CACHE_ERROR:
            write_atomic(path, json.dumps(trim.to_json(), indent=2) + "\n")
        else:
            log.warning("%s: the trim stopped %.1f %% off after %d rounds; not cached",
                        machine.topology.name, 100 * trim.error, trim.rounds)
    machine.set_delays(trim.delays)
    return trim
