"""Guest physical address ranges of each NUMA node, computed and checked against the guest.

QEMU's q35 lays the per-node memory backends out in node order in one RAM
block, maps its first part below 4 GiB (up to 2 GiB when RAM is 2.75 GiB or
more, else up to 2.75 GiB) and the rest from 4 GiB up.  CXL fixed memory
windows sit elsewhere; their addresses come from the guest's /proc/iomem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..topology import Topology

MIB = 1 << 20
FOUR_GIB = 1 << 32
# hw/i386/pc_q35.c: the low RAM split.
Q35_LOWMEM_BIG, Q35_LOWMEM_SMALL, Q35_BIG_THRESHOLD = 0x80000000, 0xB0000000, 0xB0000000

_SRAT_RE = re.compile(r"ACPI: SRAT: Node (\d+) PXM \d+ \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
_CXL_WINDOW_RE = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) : CXL Window (\d+)", re.MULTILINE)


class LayoutError(RuntimeError):
    """The guest's memory map is not the one computed from the topology."""


@dataclass(frozen=True, order=True)
class Range:
    """Guest physical [base, end) served by `node`."""

    base: int
    end: int
    node: int

    def plugin_arg(self) -> str:
        return f"range={self.base:x}:{self.end:x}:{self.node}"


def ram_ranges(topology: Topology) -> list[Range]:
    """Ranges of the ram-backed nodes on a q35 machine, in address order."""
    total = sum(n.size_mib for n in topology.ram_nodes) * MIB
    below_4g = min(total, Q35_LOWMEM_BIG if total >= Q35_BIG_THRESHOLD else Q35_LOWMEM_SMALL)
    out: list[Range] = []
    offset = 0
    for node in topology.ram_nodes:
        out += _place(offset, offset + node.size_mib * MIB, below_4g, node.id)
        offset += node.size_mib * MIB
    return sorted(out)


def _place(start: int, end: int, below_4g: int, node: int) -> list[Range]:
    """Map a slice [start, end) of the RAM block to guest physical ranges."""
    out = []
    if start < below_4g:
        out.append(Range(start, min(end, below_4g), node))
    if end > below_4g:
        lo = max(start, below_4g)
        out.append(Range(FOUR_GIB + lo - below_4g, FOUR_GIB + end - below_4g, node))
    return out


def merge(ranges: list[Range]) -> list[Range]:
    """Join adjacent ranges of the same node (the kernel reports them so)."""
    out: list[Range] = []
    for r in sorted(ranges):
        if out and out[-1].node == r.node and out[-1].end == r.base:
            out[-1] = Range(out[-1].base, r.end, r.node)
        else:
            out.append(r)
    return out


def srat_ranges(dmesg: str) -> list[Range]:
    """The kernel's SRAT memory affinity lines, as ranges."""
    found = [Range(int(lo, 16), int(hi, 16) + 1, int(node)) for node, lo, hi in _SRAT_RE.findall(dmesg)]
    return merge(found)


def cxl_window_ranges(iomem: str, topology: Topology) -> list[Range]:
    """CXL windows from /proc/iomem; window k serves the k-th cxl-type3 node."""
    nodes = topology.cxl_nodes
    out = []
    for lo, hi, k in _CXL_WINDOW_RE.findall(iomem):
        if int(k) < len(nodes):
            out.append(Range(int(lo, 16), int(hi, 16) + 1, nodes[int(k)].id))
    return out


def check_against_guest(topology: Topology, dmesg: str) -> list[Range]:
    """Raise LayoutError unless the SRAT the guest parsed matches the computed RAM ranges."""
    computed = merge(ram_ranges(topology))
    reported = srat_ranges(dmesg)
    if not reported:
        raise LayoutError("the guest's kernel log has no 'ACPI: SRAT: Node' lines (dmesg rotated or NUMA off?)")
    # SRAT leaves the legacy VGA/BIOS hole (0xa0000-0xfffff) out of node 0, so
    # compare both ways: every SRAT range inside a computed range of its node,
    # and every computed range covered by SRAT but for at most that 1 MiB.
    def where(r: Range) -> str:
        return f"node {r.node} [{r.base:#x}, {r.end:#x})"

    for s in reported:
        if not any(c.node == s.node and c.base <= s.base and s.end <= c.end for c in computed):
            raise LayoutError(f"the guest's SRAT has {where(s)}, outside the computed ranges "
                              + ", ".join(map(where, computed)))
    for c in computed:
        covered = sum(s.end - s.base for s in reported if c.base <= s.base and s.end <= c.end)
        if c.end - c.base - covered > MIB:
            raise LayoutError(f"computed {where(c)} but the guest's SRAT covers only {covered:#x} bytes of it: "
                              + ", ".join(map(where, reported)))
    return computed
