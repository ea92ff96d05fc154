"""A run's time series: the workload's progress and the plugin's counters over the timed phase.

The workload prints its operations so far every tick (`tick t=... ops=...`);
the harness reads the plugin's per-node counters on its own ticks of the same
length.  Both are cumulative and timed from the start of the timed phase, so
any window's rate is a difference of two interpolated points: the steady
state is the window after the warm-up, when reactive policies (NUMA balancing,
DAMON) have had their time to converge.  A workload that knows its hot set
(the skewed kernel) also prints a census now and then: which node holds a
sample of its hot pages and of the rest, so a reader sees where a policy put
the hot set, not only what share of the traffic the fast node served.
"""

from __future__ import annotations

from bisect import bisect_left

from pydantic import BaseModel, ConfigDict, Field

Point = tuple[float, float]


def at(points: list[Point], t: float) -> float | None:
    """The cumulative value at `t`, linear between points (from (0, 0)); None past the last point."""
    if not points or t > points[-1][0] + 1e-9:
        return None
    times = [p[0] for p in points]
    i = bisect_left(times, t)
    (t0, v0), (t1, v1) = ((0.0, 0.0) if i == 0 else points[i - 1]), points[min(i, len(points) - 1)]
    return v1 if t1 <= t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def rate(points: list[Point], start: float, end: float | None = None) -> float | None:
    """Mean rate over [start, end] (end: the last point); None without points covering it."""
    if not points:
        return None
    end = points[-1][0] if end is None else end
    lo, hi = at(points, start), at(points, end)
    if lo is None or hi is None or end <= start:
        return None
    return (hi - lo) / (end - start)


def binned(points: list[Point], width: float) -> list[Point]:
    """(bin end, rate in the bin) for consecutive bins of `width` seconds that the points cover."""
    if not points or width <= 0:
        return []
    out, end = [], width
    while end <= points[-1][0] + 1e-9:
        out.append((round(end, 6), rate(points, end - width, end)))
        end += width
    return out


class Series(BaseModel):
    """The timed phase over time: cumulative operations (workload) and misses per node (plugin)."""

    model_config = ConfigDict(extra="forbid")
    tick_s: float = Field(gt=0)
    warmup_s: float = Field(default=0, ge=0, description="the steady state starts here")
    ops: list[tuple[float, int]] = Field(default_factory=list, description="(seconds, operations so far)")
    misses: list[tuple[float, dict[int, int]]] = Field(
        default_factory=list, description="(seconds, misses so far per node), node -1 outside every node")
    census: list[tuple[float, dict[str, dict[int, int]]]] = Field(
        default_factory=list, description="(seconds, {'hot'|'cold': {node: sampled pages there}})")

    @property
    def loop_end(self) -> float | None:
        """The workload's last tick, where its loop's own traffic ends (None without ticks)."""
        return self.ops[-1][0] if self.ops else None

    def _loop_misses(self) -> list[tuple[float, dict[int, int]]]:
        # The plugin's samples go on through the workload's exit (the kernel freeing its buffer) and
        # the harness's commands until they stop: misses that are not the loop's. On dram-cxl they
        # were about 60,000 of a first-touch run's 302,349 on the fast node, and raised its share from
        # 8.6 to 11.2 % (README, "Felt latency").
        end = self.loop_end
        return self.misses if end is None else [p for p in self.misses if p[0] <= end + 1e-9]

    def node_points(self, node: int) -> list[Point]:
        """(seconds, misses so far on `node`) over the workload's loop."""
        return [(t, per.get(node, 0)) for t, per in self._loop_misses()]

    def total_points(self) -> list[Point]:
        """(seconds, misses so far on every node) over the workload's loop."""
        return [(t, sum(v for n, v in per.items() if n >= 0)) for t, per in self._loop_misses()]

    def steady_rate(self) -> float | None:
        """Operations per second after the warm-up."""
        return rate(self.ops, self.warmup_s)

    def steady_share(self, node: int) -> float | None:
        """Share of the misses after the warm-up that `node` served."""
        total = rate(self.total_points(), self.warmup_s)
        mine = rate(self.node_points(node), self.warmup_s)
        return None if not total or mine is None else mine / total

    def placed(self, node: int, cls: str = "hot") -> list[Point]:
        """(seconds, share of the class's sampled pages on `node`) at each census, the time on the tick grid
        (a census follows a tick; repeats then line up for a median)."""
        return [(round(round(t / self.tick_s) * self.tick_s, 6), per[cls].get(node, 0) / total)
                for t, per in self.census if (total := sum(per[cls].values()))]

    def final_placed(self, node: int, cls: str = "hot") -> float | None:
        """The share of the class on `node` at the last census (the end of the run), if any."""
        points = self.placed(node, cls)
        return points[-1][1] if points else None

    def throughput(self, width: float) -> list[Point]:
        """(bin end, operations per second in the bin)."""
        return binned(self.ops, width)

    def share(self, node: int, width: float) -> list[Point]:
        """(bin end, share of that bin's misses served by `node`)."""
        mine, total = binned(self.node_points(node), width), binned(self.total_points(), width)
        return [(t, m / n) for (t, m), (_, n) in zip(mine, total, strict=True) if n]
