"""The `gather` document: machine, knobs, counters, processes and optional DAMON, versioned."""

import os
import time

from . import STATE_SCHEMA_VERSION
from .damon import DamonUnavailable, monitor
from .knobs import gather_knobs
from .machine import gather_cxl, gather_nodes
from .processes import gather_processes
from .sysfs import Tree
from .vmstat import gather_vmstat


def gather_state(tree=None, damon_seconds=None, agent_pid=None, damon_pids=None):
    """Everything the advisor needs to see, as one JSON-ready dict.

    With damon_seconds, DAMON watches `damon_pids` (default: the largest processes).
    """
    tree = tree or Tree()
    started = time.monotonic()
    agent_pid = os.getpid() if agent_pid is None else agent_pid
    processes = gather_processes(tree, skip_pids=(agent_pid,))
    state = {
        "schema_version": STATE_SCHEMA_VERSION,
        "kernel": tree.read("proc/sys/kernel/osrelease"),
        "agent_pid": agent_pid,
        "nodes": gather_nodes(tree),
        "cxl": gather_cxl(tree),
        "knobs": gather_knobs(tree),
        "vmstat": gather_vmstat(tree),
        "processes": processes,
        "damon": None,
    }
    if damon_seconds:
        state["damon"] = _damon(tree, processes, damon_seconds, damon_pids)
    state["gather_seconds"] = round(time.monotonic() - started, 3)
    return state


def _damon(tree, processes, seconds, pids=None):
    """DAMON regions of `pids` (or of the largest processes), or the reason there are none."""
    if not pids:
        pids = [p["pid"] for p in sorted(processes, key=lambda p: -p["rss_kib"])]
    try:
        regions = monitor(tree, pids, seconds)
        return {"seconds": seconds, "error": None, "regions": regions}
    except (DamonUnavailable, OSError) as exc:
        return {"seconds": seconds, "error": str(exc), "regions": {}}
