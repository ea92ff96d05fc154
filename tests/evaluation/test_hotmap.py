"""Hot maps as ranges: by hand, and from the real program's two layouts."""

from __future__ import annotations

import subprocess

from testbed import guest_binary
from testbed.evaluation import hotmap

from .conftest import WORKLOAD_SOURCE


def test_adjacent_granules_merge_in_address_order():
    text = "0x3000\n0x1000\n0x2000\n0x9000\n"
    assert hotmap.parse(text) == [0x3000, 0x1000, 0x2000, 0x9000]
    assert hotmap.ranges(hotmap.parse(text), 0x1000) == [(0x1000, 0x3000), (0x9000, 0x1000)]
    assert hotmap.ranges([], 4096) == []


def test_real_hot_maps(tmp_path, host_cache):
    program = guest_binary.build(WORKLOAD_SOURCE)

    def ranges(hot_at: str) -> list[tuple[int, int]]:
        path = tmp_path / f"{hot_at}.txt"
        subprocess.run([str(program), "size_mib=32", "hot_mib=4", "ops=1", f"hot_at={hot_at}", f"hotmap={path}"],
                       check=True, capture_output=True)
        return hotmap.ranges(hotmap.parse(path.read_text()), 4096)

    assert [length for _, length in ranges("tail")] == [4 << 20]  # one block of 4 MiB
    scattered = ranges("scattered")
    assert sum(length for _, length in scattered) == 4 << 20 and len(scattered) > 100
