"""A node's zones and watermarks from /proc/zoneinfo, as dram-nvm's guest kernel (6.12) prints it."""

import pytest
from llamas_agent import zoneinfo

# Node 0 after a first touch filled it: DMA stands apart (lowmem_reserve_ratio 1, testbed/zones.py),
# DMA32 just under its low watermark; node 1 (NVM) has room.
ZONEINFO = """\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 411
      workingset_refault_file 3590901
  pages free     3776
        boost    0
        min      126
        low      157
        high     188
        promo    219
        spanned  4095
        present  3998
        managed  3840
        cma      0
        protection: (0, 3840, 3840, 3840, 3840)
      nr_free_pages 3776
Node 0, zone    DMA32
  pages free     {dma32}
        boost    0
        min      8161
        low      10201
        high     12241
        promo    14281
        managed  244168
        protection: (0, 0, 0, 0, 0)
Node 0, zone   Normal
  pages free     0
        boost    0
        min      0
        low      0
        high     0
        managed  0
        protection: (0, 0, 0, 0, 0)
Node 1, zone   Normal
  pages free     250000
        boost    0
        min      8400
        low      10500
        high     12600
        managed  257452
        protection: (0, 0, 0, 0, 0)
"""


def test_each_zone_is_read_with_its_watermarks_and_reserve():
    zones = zoneinfo.parse(ZONEINFO.format(dma32=10144))
    assert [(z.node, z.name) for z in zones] == [(0, "DMA"), (0, "DMA32"), (0, "Normal"), (1, "Normal")]
    dma32 = zones[1]
    assert (dma32.free, dma32.low, dma32.high, dma32.managed) == (10144, 10201, 12241, 244168)
    assert zones[0].reserve == 188 + 3840  # high plus the reserve against higher zones


@pytest.mark.parametrize(("dma32", "held_back"), [
    (10144, 3776 + 10144),   # under low: every free page is held back, DMA's all along (it stands apart)
    (12241, 3776 + 12241),   # at high
    (30000, 3776 + 12241),   # above: only the watermark's share
])
def test_held_back_is_free_memory_under_each_zones_high_watermark_and_reserve(dma32, held_back):
    zones = zoneinfo.parse(ZONEINFO.format(dma32=dma32))
    assert zoneinfo.held_back_pages(zones, 0) == held_back
    assert zoneinfo.held_back_pages(zones, 1) == 12600
    assert zoneinfo.held_back_pages(zones, 7) == 0 and zoneinfo.parse("") == []
