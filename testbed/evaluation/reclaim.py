"""kswapd's state between runs: every run starts with kswapd willing to work on the nodes with CPUs.

kswapd gives up on a node after 16 balancing passes in a row that reclaim nothing (a full
fast node with demotion off and no swap, as damon's `migrate_hot` leaves it) and from then on
ignores every wake-up, the tiering's promotions included, until a direct reclaim on that node
makes progress (mm/vmscan.c resets its failure count then). A run after such a run would
inherit a kswapd that never demotes. A small proactive reclaim through the root cgroup's
`memory.reclaim`, started on the node's own CPUs so that its zonelist begins there, is such a
direct reclaim: it takes a little page cache, as any direct reclaim would.
"""

from __future__ import annotations

from ..ssh import GuestShell
from ..topology import Topology
from . import kernel_counters

CGROUP = "/sys/fs/cgroup"
MEMORY_RECLAIM = f"{CGROUP}/memory.reclaim"  # the root cgroup's: the guest's init mounts no cgroup2
REVIVE_BYTES = 1 << 20  # a little page cache: enough for "progress"


def hopeless_nodes(shell: GuestShell) -> tuple[int, ...]:
    """The nodes kswapd has given up on now (node_unreclaimable in /proc/zoneinfo)."""
    return kernel_counters.parse(shell.run(kernel_counters.ZONEINFO).stdout).hopeless


def revive(shell: GuestShell, topology: Topology) -> tuple[int, ...]:
    """Give kswapd back every hopeless node that has CPUs; return the nodes still hopeless after."""
    with_cpus = {n.id for n in topology.nodes if n.cpus}
    for node in hopeless_nodes(shell):
        if node in with_cpus:
            shell.run(f"mountpoint -q {CGROUP} || mount -t cgroup2 none {CGROUP}")
            # memory.reclaim answers EAGAIN when it reclaimed less than asked: progress is what counts
            shell.run(f"numactl --cpunodebind={node} sh -c 'echo {REVIVE_BYTES} > {MEMORY_RECLAIM}' || true")
    return hopeless_nodes(shell)
