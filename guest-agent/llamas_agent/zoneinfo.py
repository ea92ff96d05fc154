"""A node's memory zones and their watermarks, from /proc/zoneinfo.

A node's MemFree is not all room: the page allocator serves a zone only while its free
pages stay above a watermark plus the zone's reserve against allocations meant for higher
zones (`protection`, from vm.lowmem_reserve_ratio).  Below the low watermark, an
allocation that may not fall back to another node (`__GFP_THISNODE`: move_pages onto it,
a slab's first try on the CPU's node) wakes the node's kswapd, which reclaims until one
zone is back at its high watermark.  On a node full of anonymous memory, with no swap
and demotion off, all it can take is page cache that is refaulted at once (README,
"Fair baselines": kswapd storms), so the room a mover may fill is what lies above the
high watermarks.
"""

import os
import re
from dataclasses import dataclass

ZONEINFO = "/proc/zoneinfo"
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4
_HEADER = re.compile(r"(?m)^Node (\d+), zone +(\w+)$")


@dataclass(frozen=True)
class Zone:
    """One zone of one node, in pages (watermarks as the kernel applies them, boost included)."""

    node: int
    name: str
    free: int
    low: int
    high: int
    managed: int
    protection: tuple

    @property
    def reserve(self):
        """Pages kept from a movable allocation: the high watermark plus the largest lowmem reserve."""
        return self.high + max(self.protection, default=0)


def _field(block, name):
    found = re.search(rf"(?m)^\s+{name}\s+(\d+)$", block)
    return int(found.group(1)) if found else 0


def parse(text):
    """[Zone] in the order of /proc/zoneinfo; fields a zone lacks are 0."""
    zones = []
    heads = list(_HEADER.finditer(text or ""))
    for head, after in zip(heads, heads[1:] + [None]):
        block = text[head.end():after.start() if after else len(text)]
        protection = re.search(r"protection: \(([\d, ]+)\)", block)
        zones.append(Zone(node=int(head.group(1)), name=head.group(2), free=_field(block, "pages free"),
                          low=_field(block, "low"), high=_field(block, "high"), managed=_field(block, "managed"),
                          protection=tuple(int(v) for v in protection.group(1).split(",")) if protection else ()))
    return zones


def held_back_pages(zones, node):
    """Free pages of `node` that a movable allocation cannot take without waking kswapd: in each zone,
    its free pages up to its reserve (all of them in a zone that stands apart, as DMA does)."""
    return sum(min(z.free, z.reserve) for z in zones if z.node == node)
