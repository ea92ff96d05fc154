"""Shrink a guest node to a given free size by reserving huge pages on it.

Under TCG a run must be short, so working sets are small; holding most of
the fast node makes a small working set exceed it all the same, which is
what makes placement matter.  The memory is held as free pages of the
node's 2 MiB hugetlb pool: they sit on no LRU list, so no policy (demotion,
NUMA balancing, DAMON's paddr schemes, advice) can move them out of the way.
An mlocked process was not enough: DAMOS migrate_cold moved its pages.

A run leaves the node with less free memory than it found (measured: 128, 117,
117, 119, then 100 MiB free before five runs in a row, with page cache and
anonymous memory unchanged), so each run settles the pool again first. The rest
waited on the per-CPU free lists, which MemFree does not count and which keep
pages when idle: their bound follows the node's low watermark, 5,095 pages
(20 MiB) per CPU on dram-cxl's node 0, where THP raises min_free_kbytes to 66
MiB. So a run found up to 40 MiB more fast memory than it was settled to, and
a huge page the settle gave back sat on those lists instead of reaching MemFree
(measured: four pages freed, MemFree 127 -> 125 MiB, the lists +9 MiB), which
left a CI run settled to 122 MiB after its three passes. The evaluation
therefore sets the lists to their smallest (PCP_HIGH_FRACTION, a baseline knob):
252 pages (1 MiB) per CPU at once, and each huge page given back then moves
MemFree by its 2 MiB.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from .. import zones
from ..ssh import GuestShell

HUGE_MIB = 2
HUGE_PAGES = 512  # base pages in one
# The largest fraction gives each per-CPU list the kernel's floor of four batches (~1 MiB).
PCP_HIGH_FRACTION_PATH, PCP_HIGH_FRACTION = "/proc/sys/vm/percpu_pagelist_high_fraction", "100000"
SETTLE_PASSES, SETTLE_PAUSE_S = 3, 1.0
_FREE_RE = re.compile(r"^Node\s+(\d+)\s+MemFree:\s+(\d+)\s+kB$", re.MULTILINE)


class SqueezeError(RuntimeError):
    """The node cannot be shrunk as asked."""


def free_mib(meminfo: str, node: int) -> int:
    """MemFree of `node` (MiB) from its /sys/devices/system/node/nodeN/meminfo text."""
    for found, kib in _FREE_RE.findall(meminfo):
        if int(found) == node:
            return int(kib) // 1024
    raise SqueezeError(f"no 'Node {node} MemFree' line in the node's meminfo: {meminfo[:200]!r}")


def node_free_mib(shell: GuestShell, node: int) -> int:
    return free_mib(shell.run(f"cat /sys/devices/system/node/node{int(node)}/meminfo").stdout, node)


def pool_path(node: int) -> str:
    """The node's 2 MiB hugetlb pool size in sysfs."""
    return f"/sys/devices/system/node/node{int(node)}/hugepages/hugepages-{HUGE_MIB * 1024}kB/nr_hugepages"


def _set_pool(shell: GuestShell, node: int, pages: int) -> int:
    """Ask for `pages` huge pages on `node`; return how many the kernel reserved."""
    path = pool_path(node)
    done = shell.run(f"echo {int(pages)} > {path} && cat {path}", check=False)
    if not done.ok:
        raise SqueezeError(f"cannot size the hugetlb pool of node {node} ({path}): {done.stderr.strip()}")
    return int(done.stdout)


@dataclass
class Squeeze:
    """Memory held on `node` as free huge pages, until `release()`."""

    shell: GuestShell | None
    node: int
    held_mib: int

    def settle(self, leave_mib: int) -> int:
        """Give the next run the node as the squeeze left it: clean page cache dropped (so kswapd
        finds little to free on it in the middle of the run's first touch) and the pool resized so
        about `leave_mib` is free again. Return the node's free MiB after.

        It does not stop a first touch from placing single transparent huge pages on the node
        after base pages have moved on to the slow one (README, "Evaluation")."""
        self.shell.run("sync; echo 3 > /proc/sys/vm/drop_caches")
        free = node_free_mib(self.shell, self.node)
        for _ in range(SETTLE_PASSES):  # freed pages reach MemFree a little later
            if leave_mib <= free < leave_mib + HUGE_MIB:
                break
            pool = int(self.shell.run(f"cat {pool_path(self.node)}").stdout)
            wanted = max(0, pool + (free - leave_mib) // HUGE_MIB)
            self.held_mib = _set_pool(self.shell, self.node, wanted) * HUGE_MIB
            time.sleep(SETTLE_PAUSE_S)
            free = node_free_mib(self.shell, self.node)
        return free

    def yield_to_high(self) -> int:
        """After a first touch: give back held pages until a zone of the node is at its high watermark
        again; return the MiB given back.

        A first touch that fills the node stops with it just under its low watermark, where its
        allocations fall back to the slow node and wake no one; the next allocation that may not fall
        back (move_pages onto the node, a slab's first try on the CPU's node) wakes kswapd, which on
        a node of anonymous memory, without swap or demotion, can take only hot page cache that comes
        straight back: a storm (README, "Fair baselines"). On the machine modelled, the memory held
        here would be other tenants' cold pages, which kswapd would take, so they are given back."""
        given = 0
        for _ in range(SETTLE_PASSES):
            short = zones.short_of_high(self.shell.run(f"cat {zones.ZONEINFO}").stdout, self.node)
            if not short or not self.held_mib:
                break
            pool = self.held_mib // HUGE_MIB
            self.held_mib = _set_pool(self.shell, self.node, pool - min(pool, math.ceil(short / HUGE_PAGES))) * HUGE_MIB
            given += pool * HUGE_MIB - self.held_mib
            time.sleep(SETTLE_PAUSE_S)
        return given

    def release(self) -> None:
        if self.shell is not None:
            _set_pool(self.shell, self.node, 0)
            self.shell = None


def squeeze(shell: GuestShell, node: int, leave_mib: int) -> Squeeze:
    """Hold memory on `node` so that about `leave_mib` stays free (nothing held if it is already that small)."""
    hold = node_free_mib(shell, node) - leave_mib
    if hold < HUGE_MIB:
        return Squeeze(shell, node, 0)  # nothing to hold yet; settle() may hold some later
    wanted = hold // HUGE_MIB
    got = _set_pool(shell, node, wanted)
    if got < wanted:  # no free 2 MiB block left: drop clean page cache, compact, ask again
        shell.run("sync; echo 3 > /proc/sys/vm/drop_caches; echo 1 > /proc/sys/vm/compact_memory", check=False)
        got = _set_pool(shell, node, wanted)
    if got < wanted * 0.9:
        _set_pool(shell, node, 0)
        raise SqueezeError(f"node {node}: the kernel reserved {got} of {wanted} huge pages "
                           f"({got * HUGE_MIB} of {hold} MiB); its free memory is too fragmented")
    return Squeeze(shell, node, got * HUGE_MIB)
