"""Between runs the harness gives kswapd back the nodes it gave up on, and only where a reclaim can start."""

from __future__ import annotations

from testbed.evaluation import reclaim

HOPELESS = """Node 0, zone      DMA
  node_unreclaimable:  1
Node 0, zone    DMA32
  node_unreclaimable:  1
Node 1, zone   Normal
  node_unreclaimable:  1
"""
REVIVED = HOPELESS.replace("DMA\n  node_unreclaimable:  1", "DMA\n  node_unreclaimable:  0").replace(
    "DMA32\n  node_unreclaimable:  1", "DMA32\n  node_unreclaimable:  0")


class Guest:
    """A shell whose zoneinfo says every node is hopeless until a reclaim was started on node 0's CPUs."""

    def __init__(self):
        self.commands: list[str] = []

    def run(self, command, **_):
        self.commands.append(command)
        revived = any("--cpunodebind=0" in c and reclaim.MEMORY_RECLAIM in c for c in self.commands)
        return type("Result", (), {"stdout": REVIVED if revived else HOPELESS})()


def test_hopeless_nodes_with_cpus_get_a_direct_reclaim_started_there(load_topology):
    guest = Guest()
    still = reclaim.revive(guest, load_topology("dram-nvm"))
    assert still == (1,)  # node 1 has no CPUs: no reclaim can start there, and it stays recorded
    reclaims = [c for c in guest.commands if reclaim.MEMORY_RECLAIM in c]
    assert reclaims == [(f"numactl --cpunodebind=0 sh -c 'echo {reclaim.REVIVE_BYTES} > "
                         f"{reclaim.MEMORY_RECLAIM}' || true")]


def test_a_hopeless_node_without_cpus_gets_no_reclaim(load_topology):
    guest = Guest()
    guest.commands.append(f"--cpunodebind=0 {reclaim.MEMORY_RECLAIM}")  # already revived
    assert reclaim.revive(guest, load_topology("dram-nvm")) == (1,)
    assert len(guest.commands) == 3  # the marker, then two zoneinfo reads
