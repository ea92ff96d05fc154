"""The DMA zone's reserve and a node's distance from its high watermark: read from /proc/zoneinfo as the guest
kernel prints it (6.12)."""
import pytest

from testbed import zones

ZONEINFO = """\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 0
  pages free     3776
        boost    0
        min      129
        low      161
        high     193
        promo    225
        spanned  4095
        present  3998
        managed  3840
        cma      0
        protection: (0, {dma}, {dma}, {dma}, {dma})
Node 0, zone    DMA32
  pages free     231194
        promo    14266
        managed  244168
        protection: (0, 0, 0, 0, 0)
Node 0, zone   Normal
  pages free     0
        managed  0
        protection: (0, 0, 0, 0, 0)
Node 1, zone      DMA
  pages free     0
        managed  0
        protection: (0, 0, 0, 0, 0)
Node 1, zone    DMA32
  pages free     254025
        managed  257452
        protection: (0, 0, 0, 0, 0)
"""


@pytest.mark.parametrize(("reserve", "apart"), [(953, False), (3839, False), (3840, True), (244168, True)])
def test_dma_stands_apart_only_when_its_reserve_covers_it(reserve, apart):
    assert zones.dma_stands_apart(ZONEINFO.format(dma=reserve)) is apart


def test_an_empty_dma_zone_needs_no_reserve():
    # Node 1's DMA zone has no pages and no reserve: only node 0's counts.
    assert zones.dma_stands_apart(ZONEINFO.format(dma=3840))


# dram-nvm's node 0 after a first touch filled it: DMA apart, DMA32 just under its low watermark (10,201).
FILLED = """\
Node 0, zone      DMA
  pages free     3776
        high     188
        managed  3840
        protection: (0, 3840, 3840, 3840, 3840)
Node 0, zone    DMA32
  pages free     {free}
        min      8161
        low      10201
        high     12241
        managed  244168
        protection: (0, 0, 0, 0, 0)
Node 0, zone   Normal
  pages free     0
        high     0
        managed  0
        protection: (0, 0, 0, 0, 0)
"""


@pytest.mark.parametrize(("free", "short"), [(10144, 12241 - 10144), (12241, 0), (50000, 0)])
def test_short_of_high_counts_what_the_one_zone_for_movable_pages_lacks(free, short):
    # DMA (apart) and the empty Normal zone serve no movable page: DMA32 alone decides.
    assert zones.short_of_high(FILLED.format(free=free), 0) == short


def test_a_node_without_a_zone_for_movable_pages_has_no_shortfall():
    assert zones.short_of_high(FILLED.split("Node 0, zone    DMA32")[0], 0) is None
    assert zones.short_of_high(FILLED.format(free=1), 1) is None
