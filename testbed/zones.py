"""The guest's memory zones reserved as on the full-size machine a topology models.

A topology's fast node is hundreds of MiB, the machines it models have many GiB. On q35 the
first 16 MiB of node 0 form ZONE_DMA, and Linux guards a lower zone against allocations meant
for higher ones by a reserve of (pages above it) / vm.lowmem_reserve_ratio. With 1 GiB above
it that reserve is ~950 pages, less than DMA's ~3,800 free ones, so DMA alone meets the
promotion watermark: kswapd's `pgdat_balanced` (true if *any* zone is balanced) then never
wakes for the tiering's promotions, nothing is demoted, and hot pages stay on the slow node.
On a node of more than ~4 GiB (every machine the topologies model) the reserve at ratio 256
exceeds DMA's size and DMA takes no part. Ratio 1 gives the small node the same: DMA's
reserve becomes everything above it.
"""
from __future__ import annotations

import re

RATIO_FILE = "/proc/sys/vm/lowmem_reserve_ratio"
ZONEINFO = "/proc/zoneinfo"


class ZoneReserveError(RuntimeError):
    """The guest did not take the reserve the testbed set."""


def dma_stands_apart(zoneinfo: str) -> bool:
    """True if every node's DMA zone reserves at least its own size against the top zone."""
    for managed, protection in _dma_zones(zoneinfo):
        if managed and protection[-1] < managed:
            return False
    return True


def _dma_zones(zoneinfo: str) -> list[tuple[int, list[int]]]:
    zones = []
    for block in re.split(r"(?m)^Node \d+, zone +", zoneinfo)[1:]:
        if not block.startswith("DMA\n"):
            continue
        managed = int(re.search(r"managed\s+(\d+)", block).group(1))
        protection = [int(v) for v in re.search(r"protection: \(([\d, ]+)\)", block).group(1).split(",")]
        zones.append((managed, protection))
    return zones


def reserve_dma_as_full_size(shell) -> None:
    """Set DMA's lowmem reserve ratio to 1 and check that every DMA zone now stands apart."""
    ratios = shell.run(f"cat {RATIO_FILE}").stdout.split()
    ratios[0] = "1"
    shell.run(f"echo '{' '.join(ratios)}' > {RATIO_FILE}")
    if not dma_stands_apart(shell.run(f"cat {ZONEINFO}").stdout):
        raise ZoneReserveError(f"{RATIO_FILE}: DMA's reserve is still below its size after writing {ratios}")
