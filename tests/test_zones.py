"""The DMA zone's reserve: read from /proc/zoneinfo as the guest kernel prints it (6.12)."""
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
    # Node 1's DMA zone has no pages: only node 0's counts.
    text = ZONEINFO.format(dma=244168)
    assert zones._dma_zones(text) == [(3840, [0, 244168, 244168, 244168, 244168]), (0, [0, 0, 0, 0, 0])]


class _Shell:
    """Runs the three commands against an in-memory ratio file and a zoneinfo that follows it."""

    def __init__(self, takes: bool):
        self.ratios, self.takes, self.commands = "256\t256\t32\t0\t0", takes, []

    def run(self, command):
        self.commands.append(command)
        if command.startswith("echo"):
            self.ratios = command.split("'")[1]
        reserve = 244168 if self.takes and self.ratios.startswith("1 ") else 953
        out = {f"cat {zones.RATIO_FILE}": self.ratios, f"cat {zones.ZONEINFO}": ZONEINFO.format(dma=reserve)}
        return type("R", (), {"stdout": out.get(command, "")})()


def test_reserve_writes_ratio_one_for_dma_and_keeps_the_others():
    shell = _Shell(takes=True)
    zones.reserve_dma_as_full_size(shell)
    assert shell.ratios == "1 256 32 0 0"


def test_reserve_not_taken_names_the_file():
    with pytest.raises(zones.ZoneReserveError, match="lowmem_reserve_ratio"):
        zones.reserve_dma_as_full_size(_Shell(takes=False))
