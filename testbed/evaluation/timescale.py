"""The kernel's policy clocks at the emulated machine's speed.

Under emulation the guest's clock is host time, but the machine runs k times
slower than the one it models (every memory access is felt k times its
target latency; k comes from the latency calibration).  Left alone, every
periodic mechanism of the kernel (NUMA balancing's scans, its hot-page
threshold and promotion rate limit, DAMON's sampling, aggregation and quota
intervals) does k times more work per unit of the workload's progress than it
would on hardware, and a reactive policy pays that in hint faults and kdamond
time that a real machine would not see.  Scaling those clocks by k keeps each
mechanism's work per operation what it would be on hardware.  Sizes (bytes
scanned per period, bytes per quota) stay as they are: a period is k times
longer and so is the work done in it.
"""

from __future__ import annotations

import shlex

from ..policy import PlacementPolicy
from ..ssh import GuestShell

DEBUGFS = "/sys/kernel/debug"
NUMA_DEBUGFS = f"{DEBUGFS}/sched/numa_balancing"
# Knobs that are periods (scaled up by the factor) and rates (scaled down), Linux 6.12.
PERIODS = tuple(f"{NUMA_DEBUGFS}/{name}" for name in
                ("scan_delay_ms", "scan_period_min_ms", "scan_period_max_ms", "hot_threshold_ms"))
RATES = ("/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps",)
INTERVAL_MAX_S = 3600  # placement-policy-v1's longest interval


class TimeScaleError(RuntimeError):
    """The guest kernel lacks a knob the time scale needs."""


def resolve(requested: str | float, k: float | None) -> float:
    """The factor to use: a number as given, 'auto' as the calibration's k (1 without emulated latency)."""
    if requested == "auto":
        return round(k, 3) if k else 1.0
    return float(requested)


def scaled(value: int, factor: float, period: bool) -> int:
    """A period times the factor, a rate divided by it; never below 1."""
    return max(1, round(value * factor if period else value / factor))


def numa_balancing(shell: GuestShell, factor: float) -> dict[str, list[int]]:
    """Scale NUMA balancing's periods and promotion rate limit in the guest; return {knob: [booted, now]}."""
    knobs = [*PERIODS, *RATES]
    got = shell.run(f"mountpoint -q {DEBUGFS} || mount -t debugfs none {DEBUGFS}; "
                    f"for k in {' '.join(knobs)}; do echo \"$k $(cat $k)\"; done", check=False)
    booted = {}
    for line in got.stdout.splitlines():
        path, _, value = line.partition(" ")
        if not value.strip().isdigit():
            raise TimeScaleError(f"the guest kernel has no readable {path} (got {value.strip()!r})")
        booted[path] = int(value)
    changed = {k: [v, scaled(v, factor, k in PERIODS)] for k, v in booted.items()}
    script = "; ".join(f"echo {now} > {shlex.quote(k)}; echo \"{k} $(cat {shlex.quote(k)})\""
                       for k, (_, now) in changed.items())
    for line in shell.run(script).stdout.splitlines():  # read back: what the kernel took, not what was sent
        path, _, value = line.partition(" ")
        if int(value) != changed[path][1]:
            raise TimeScaleError(f"the guest kernel kept {path} at {value.strip()} (asked {changed[path][1]})")
    return changed


def damon_intervals(factor: float) -> dict[str, int]:
    """DAMON's sampling, aggregation and region-update intervals (µs) and quota reset interval (ms), scaled.

    The unscaled values are what the damon policy has always used (5 ms sampling,
    100 ms aggregation, DAMON's default 1 s updates, a quota reset every second).
    """
    return {"sample_us": scaled(5_000, factor, True), "aggr_us": scaled(100_000, factor, True),
            "update_us": scaled(1_000_000, factor, True), "reset_interval_ms": scaled(1_000, factor, True)}


def placement_limits(policy: PlacementPolicy, factor: float) -> PlacementPolicy:
    """A placement policy whose daemon runs at the modelled machine's speed: its interval times the
    factor, its bandwidth divided by it, so a round moves what it would on hardware. (Its own DAMON
    watch, 5 ms samples over the interval's last 2 s, is the agent's and stays as it is.)"""
    if factor == 1:
        return policy
    limits = policy.limits.model_copy(update={
        "interval_s": min(INTERVAL_MAX_S, round(policy.limits.interval_s * factor, 3)),
        "bandwidth_mib_s": scaled(policy.limits.bandwidth_mib_s, factor, False)})
    return policy.model_copy(update={"limits": limits})
