"""How far a re-run's figures moved from the recorded evaluation's: does a verdict hold on a second try?

`testbed eval --rerun DIR/manifest.json` runs the recorded matrix again; when DIR still
holds the recorded results, each cell's median and its ratio to first touch are set
beside the new ones.  A figure a researcher can trust holds both: the median within
MEDIAN_TOLERANCE of the first run's, the ratio within RATIO_TOLERANCE (the bounds the
felt-latency issue asks of a re-run on the same host).

Where a cell moved, `moved` says where: each operation's time splits into the felt delays
(the latency plugin's sleeps, and the waits for a host CPU it counted as paid on a loaded
host) and the rest of the workload's loop (the emulator running the guest: TCG's own cost
per access, which drifts from run to run, and the kernel's work on the workload's behalf),
beside the delays the misses owed (which follow the placement, whatever the host's load)
and the pages the kernel migrated (what a reactive policy did differently).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from .results import Run
from .summary import BASELINE, Row, fmt, group, median

MEDIAN_TOLERANCE = 0.05
RATIO_TOLERANCE = 0.03
TXT_NAME = "agreement.txt"


@dataclass(frozen=True)
class Agreement:
    """One cell's figure in the recorded evaluation and in the re-run."""

    topology: str
    workload: str
    policy: str
    figure: str
    median: tuple[float | None, float | None]  # recorded, re-run
    ratio: tuple[float | None, float | None]   # to first touch's median: recorded, re-run (None for first touch)

    @property
    def median_change(self) -> float | None:
        return _change(*self.median)

    @property
    def ratio_change(self) -> float | None:
        return _change(*self.ratio)

    def holds(self) -> bool | None:
        """Both within their tolerances; None where either side has no figure."""
        median, ratio = self.median_change, self.ratio_change
        if median is None:
            return None
        return _within(median, MEDIAN_TOLERANCE) and (ratio is None or _within(ratio, RATIO_TOLERANCE))


def _within(change: float, tolerance: float) -> bool:
    return abs(change) <= tolerance


def _change(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None or before == 0 else after / before - 1


def compare(recorded: list[Row], rerun: list[Row]) -> list[Agreement]:
    """The re-run's cells, in its order, each beside the recorded cell of the same key (if any)."""
    before = {(r.topology, r.workload, r.policy, r.figure): r for r in recorded}
    out = []
    for row in rerun:
        old = before.get((row.topology, row.workload, row.policy, row.figure))
        ratio = (None, None) if row.policy == BASELINE else (old.ratio if old else None, row.ratio)
        out.append(Agreement(row.topology, row.workload, row.policy, row.figure,
                             (old.median if old else None, row.median), ratio))
    return out


def verdict(cells: list[Agreement]) -> str:
    """One line: how many medians and ratios held their tolerance."""
    medians = [c.median_change for c in cells if c.median_change is not None]
    ratios = [c.ratio_change for c in cells if c.ratio_change is not None]
    held_m = sum(_within(m, MEDIAN_TOLERANCE) for m in medians)
    held_r = sum(_within(r, RATIO_TOLERANCE) for r in ratios)
    worst = max((abs(m) for m in medians), default=0.0)
    return (f"medians within {MEDIAN_TOLERANCE:.0%} of the recorded run: {held_m} of {len(medians)} "
            f"(largest change {worst:.1%}); ratios to default within {RATIO_TOLERANCE:.0%}: "
            f"{held_r} of {len(ratios)}")


@dataclass(frozen=True)
class Split:
    """Where one cell's time per operation went, medians over its runs (ns per operation)."""

    felt_ns: float | None    # the plugin's sleeps and the host-CPU waits it counted as paid: every vCPU's, over
    #                          the run's counters_window (the loop, for a workload that marks it)
    rest_ns: float | None    # the workload's loop less the felt delays: the emulator running the guest
    owed_ns: float | None    # the delays the misses owed (per-node delay_ns): the placement's, whatever the load
    migrated: float | None   # pages the kernel migrated in the timed phase (pgmigrate_success)


def split(runs: list[Run]) -> Split:
    """The medians of each run's felt, rest and owed time per operation (runs that report ops and seconds)."""
    per_op = [(felt / ops, max(seconds * 1e9 - felt, 0.0) / ops, sum(c.delay_ns for c in run.counters.values()) / ops)
              for run in runs if run.ok
              for ops, seconds, felt in [(run.figures.get("ops"), run.figures.get("seconds"),
                                          run.slept_ns + run.credited_ns)]
              if ops and seconds is not None]
    migrated = [run.vmstat.get("pgmigrate_success", 0) for run in runs if run.ok and run.vmstat]
    felt, rest, owed = (median([p[i] for p in per_op]) for i in range(3))
    return Split(felt, rest, owed, median(migrated))


@dataclass(frozen=True)
class Moved:
    """One cell's time per operation, and its migrations, in the recorded evaluation and in the re-run."""

    key: tuple[str, str, str]  # topology, workload, policy
    before: Split
    after: Split

    def most(self) -> str | None:
        """Which part of an operation's time moved more: "delays" (the felt ones) or "emulator"."""
        b, a = self.before, self.after
        if None in (b.felt_ns, b.rest_ns, a.felt_ns, a.rest_ns):
            return None
        return "delays" if abs(a.felt_ns - b.felt_ns) > abs(a.rest_ns - b.rest_ns) else "emulator"


def moved(recorded: list[Run], rerun: list[Run]) -> list[Moved]:
    """Each cell of the re-run (in its order) that the recorded evaluation also ran, split both ways."""
    before = group([r for r in recorded if not r.interrupted])
    return [Moved(key, split(before[key]), split(runs))
            for key, runs in group([r for r in rerun if not r.interrupted]).items() if key in before]


def moved_verdict(cells: list[Agreement], splits: list[Moved]) -> str:
    """One line: of the cells that did not hold, how many moved most in the felt delays, how many in the emulator."""
    missed = {(c.topology, c.workload, c.policy) for c in cells if c.holds() is False}
    where = [m.most() for m in splits if m.key in missed]
    cells_text = "1 cell that" if len(missed) == 1 else f"{len(missed)} cells that"
    return (f"of the {cells_text} did not hold, time per operation moved most in the emulator's own "
            f"time in {where.count('emulator')}, in the felt delays in {where.count('delays')}")


def moved_table(splits: list[Moved], title: str = "where each operation's time went") -> Table:
    """Felt and rest time per operation, the owed delays' change and pages migrated, recorded and re-run,
    and which part moved more."""
    t = Table(title=title)
    for name in ("topology", "workload", "policy", "felt ns/op", "re-run", "change", "owed change", "rest ns/op",
                 "re-run", "change", "migrated", "re-run", "moved most"):
        t.add_column(name, justify="left" if name in ("topology", "workload", "policy", "moved most") else "right")
    for m in splits:
        b, a = m.before, m.after
        t.add_row(*m.key, fmt(b.felt_ns), fmt(a.felt_ns), _pct(_change(b.felt_ns, a.felt_ns)),
                  _pct(_change(b.owed_ns, a.owed_ns)),
                  fmt(b.rest_ns), fmt(a.rest_ns), _pct(_change(b.rest_ns, a.rest_ns)),
                  fmt(b.migrated), fmt(a.migrated), m.most() or "-")
    return t


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def table(cells: list[Agreement], title: str = "re-run against the recorded evaluation") -> Table:
    """Recorded and re-run medians and ratios, their changes, and whether the cell held."""
    t = Table(title=title)
    for name in ("topology", "workload", "figure", "policy", "median", "re-run", "change", "x default",
                 "re-run", "change", "held"):
        t.add_column(name, justify="right" if name in ("median", "re-run", "change", "x default") else "left")
    for c in cells:
        held = c.holds()
        t.add_row(c.topology, c.workload, c.figure, c.policy, fmt(c.median[0]), fmt(c.median[1]),
                  _pct(c.median_change), fmt(c.ratio[0]), fmt(c.ratio[1]), _pct(c.ratio_change),
                  "-" if held is None else "yes" if held else "no")
    return t
