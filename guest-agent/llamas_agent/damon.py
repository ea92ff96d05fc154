"""Access frequency per memory region of a few processes, from DAMON's sysfs interface.

One kdamond per process (a kdamond runs one context, and the tried regions of
a context do not say which target they belong to).  A `stat` scheme that
matches every region lets `update_schemes_tried_regions` list the regions with
their access counts.  The agent only uses DAMON when nobody else does, and
always turns its kdamonds off and removes them, inside the time bound.
"""

import time

ADMIN = "sys/kernel/mm/damon/admin/kdamonds"
MAX_SECONDS = 30.0
MAX_TARGETS = 4
MAX_REGIONS = 64
SAMPLE_US, AGGR_US, UPDATE_US = 5000, 100000, 1000000
ULONG_MAX, UINT_MAX = 2**64 - 1, 2**32 - 1


class DamonUnavailable(RuntimeError):
    """DAMON is missing or already in use."""


def _w(tree, rel, value):
    with open(tree.path(ADMIN, rel), "w") as f:
        f.write(str(value))


def _setup(tree, index, pid, aggr_us=AGGR_US, nr_regions=None):
    ctx = f"{index}/contexts/0"
    _w(tree, f"{index}/contexts/nr_contexts", 1)
    _w(tree, f"{ctx}/operations", "vaddr")
    _w(tree, f"{ctx}/monitoring_attrs/intervals/sample_us", SAMPLE_US)
    _w(tree, f"{ctx}/monitoring_attrs/intervals/aggr_us", aggr_us)
    _w(tree, f"{ctx}/monitoring_attrs/intervals/update_us", max(UPDATE_US, aggr_us))
    if nr_regions:  # fewer regions: less for kdamond to sample and for us to read back (DAMON's default is 1000)
        _w(tree, f"{ctx}/monitoring_attrs/nr_regions/max", nr_regions)
    _w(tree, f"{ctx}/targets/nr_targets", 1)
    _w(tree, f"{ctx}/targets/0/pid_target", pid)
    _w(tree, f"{ctx}/schemes/nr_schemes", 1)
    _w(tree, f"{ctx}/schemes/0/action", "stat")
    # A new scheme's access pattern ranges are all 0..0 (it matches nothing): open them up.
    pattern = f"{ctx}/schemes/0/access_pattern"
    _w(tree, f"{pattern}/sz/max", ULONG_MAX)
    _w(tree, f"{pattern}/nr_accesses/max", UINT_MAX)
    _w(tree, f"{pattern}/age/max", UINT_MAX)


def _regions(tree, index, max_regions=MAX_REGIONS):
    base = f"{index}/contexts/0/schemes/0/tried_regions"
    _w(tree, f"{index}/state", "update_schemes_tried_regions")
    names = sorted(int(n) for n in tree.listdir(ADMIN, base) if n.isdigit())
    regions = [{field: tree.read_int(ADMIN, base, str(n), field, default=0)
                for field in ("start", "end", "nr_accesses", "age")} for n in names]
    # The hottest regions first; the list is bounded so the document stays small.
    regions.sort(key=lambda r: (-r["nr_accesses"], r["start"]))
    return regions[:max_regions]


def monitor(tree, pids, seconds, aggr_us=AGGR_US, max_regions=MAX_REGIONS, nr_regions=None):
    """{pid: [regions]} after watching `pids` (at most MAX_TARGETS) for `seconds`.

    A region's nr_accesses counts the samples (one per SAMPLE_US) of its last aggregation
    interval (`aggr_us`) that found it accessed; the `max_regions` hottest are kept per pid.
    `nr_regions` caps how many regions DAMON keeps per process (its own default: 1000).
    """
    if tree.read_int(ADMIN, "nr_kdamonds") is None:
        raise DamonUnavailable("DAMON sysfs interface not found")
    if tree.read_int(ADMIN, "nr_kdamonds") != 0:
        raise DamonUnavailable("DAMON is already in use (nr_kdamonds != 0); not touching it")
    seconds = min(max(seconds, 0.2), MAX_SECONDS)
    pids = list(pids)[:MAX_TARGETS]
    _w(tree, "nr_kdamonds", len(pids))
    started, out = [], {}
    try:
        for i, pid in enumerate(pids):
            _setup(tree, i, pid, aggr_us, nr_regions)
            try:
                _w(tree, f"{i}/state", "on")
                started.append((i, pid))
            except OSError:  # the process exited meanwhile
                out[str(pid)] = None
        time.sleep(seconds)
        for i, pid in started:
            out[str(pid)] = _regions(tree, i, max_regions)
    finally:
        for i, _ in started:
            try:
                _w(tree, f"{i}/state", "off")
            except OSError:
                pass
        _w(tree, "nr_kdamonds", 0)
    return out
