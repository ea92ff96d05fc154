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

The same file says how far a node is from kswapd's goal, a zone at its high watermark
(`short_of_high`), which the evaluation's squeeze gives back after a first touch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

RATIO_FILE = "/proc/sys/vm/lowmem_reserve_ratio"
ZONEINFO = "/proc/zoneinfo"


class ZoneReserveError(RuntimeError):
    """The guest did not take the reserve the testbed set."""


@dataclass(frozen=True)
class Zone:
    """What the host asks of one zone of a guest node (pages); the agent reads more (llamas_agent/zoneinfo.py)."""

    node: int
    name: str
    free: int
    high: int
    managed: int
    protection: tuple[int, ...]

    @property
    def reserve(self) -> int:
        """Pages kept from a movable allocation: the high watermark plus the largest lowmem reserve."""
        return self.high + max(self.protection, default=0)


def parse(zoneinfo: str) -> list[Zone]:
    """Every zone of /proc/zoneinfo, in its order; a field a zone does not print is 0."""
    zones = []
    for node, name, block in re.findall(r"(?ms)^Node (\d+), zone +(\w+)$(.*?)(?=^Node |\Z)", zoneinfo):
        field = {key: int(value) for key, value in re.findall(r"(?m)^\s+(pages free|high|managed)\s+(\d+)$", block)}
        reserve = re.search(r"protection: \(([\d, ]+)\)", block)
        zones.append(Zone(int(node), name, field.get("pages free", 0), field.get("high", 0), field.get("managed", 0),
                          tuple(int(v) for v in reserve.group(1).split(",")) if reserve else ()))
    return zones


def dma_stands_apart(zoneinfo: str) -> bool:
    """True if every node's DMA zone reserves at least its own size against the top zone."""
    return all(not z.managed or z.protection[-1:] >= (z.managed,) for z in parse(zoneinfo) if z.name == "DMA")


def short_of_high(zoneinfo: str, node: int) -> int | None:
    """Pages `node` must gain before one of its zones that serves movable pages is at its high watermark
    plus reserve (kswapd's goal: one balanced zone is enough); None if it has no such zone."""
    shortfalls = [max(0, z.reserve - z.free) for z in parse(zoneinfo) if z.node == node and z.managed > z.reserve]
    return min(shortfalls) if shortfalls else None


def reserve_dma_as_full_size(shell) -> None:
    """Set DMA's lowmem reserve ratio to 1 and check that every DMA zone now stands apart."""
    ratios = shell.run(f"cat {RATIO_FILE}").stdout.split()
    ratios[0] = "1"
    shell.run(f"echo '{' '.join(ratios)}' > {RATIO_FILE}")
    if not dma_stands_apart(shell.run(f"cat {ZONEINFO}").stdout):
        raise ZoneReserveError(f"{RATIO_FILE}: DMA's reserve is still below its size after writing {ratios}")
