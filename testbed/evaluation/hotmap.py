"""The skewed kernel's hot map (its hot granules' addresses, hottest first) as address ranges.

Ground truth of what is hot, straight from the program: the `oracle` policy
moves these ranges to the fastest node (after making room), and a check can
compare any policy's placement against them.
"""

from __future__ import annotations


def parse(text: str) -> list[int]:
    """Granule addresses in rank order (hottest first), from one hex address per line."""
    return [int(line, 16) for line in text.split()]


def ranges(addresses: list[int], granule: int) -> list[tuple[int, int]]:
    """Merge granules into (start, length) ranges of adjacent granules, in address order."""
    out: list[tuple[int, int]] = []
    for address in sorted(addresses):
        if out and out[-1][0] + out[-1][1] == address:
            out[-1] = (out[-1][0], out[-1][1] + granule)
        else:
            out.append((address, granule))
    return out
