"""How far a re-run's figures moved from the recorded evaluation's: does a verdict hold on a second try?

`testbed eval --rerun DIR/manifest.json` runs the recorded matrix again; when DIR still
holds the recorded results, each cell's median and its ratio to first touch are set
beside the new ones.  A figure a researcher can trust holds both: the median within
MEDIAN_TOLERANCE of the first run's, the ratio within RATIO_TOLERANCE (the bounds the
felt-latency issue asks of a re-run on the same host).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from .summary import BASELINE, Row, fmt

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
