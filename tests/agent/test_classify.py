"""Classifying memory from a fixture /proc: soft-dirty bits for writes, the idle page bitmap for accesses."""

from __future__ import annotations

import pytest
from llamas_agent.classify import (
    CHUNK_PAGES,
    PAGE,
    SAMPLE_PAGES,
    DamonHeat,
    IdleBitmap,
    arm,
    classes,
    launch_name,
    measure,
    present_addresses,
    read_pagemap,
    scoped_mappings,
)
from llamas_agent.processes import parse_maps

from .fixture_tree import add_idle_bitmap, add_mapped_process, pagemap_entry

BASE = 0x10000000
MAPS = (f"{BASE:x}-{BASE + 2 * CHUNK_PAGES * PAGE:x} rw-p 00000000 00:00 0\n"
        "20000000-20010000 r-xp 00000000 fe:00 77  /usr/bin/python3.13\n"
        "30000000-30010000 rw-s 00000000 00:01 9   /dev/shm/x\n"
        "40000000-40001000 rw-p 00000000 00:00 0   [heap]\n")


@pytest.fixture
def process(guest_root):
    """pid 500: chunk 0 all written, chunk 1 half its pages present, none written; 4 pages of heap."""
    pages = {BASE + i * PAGE: pagemap_entry(0x1000 + i, written=True) for i in range(CHUNK_PAGES)}
    pages |= {BASE + (CHUNK_PAGES + i) * PAGE: pagemap_entry(0x2000 + i) for i in range(0, CHUNK_PAGES, 2)}
    pages |= {0x40000000: pagemap_entry(0x3000)}
    add_mapped_process(guest_root, 500, "bench", MAPS, pages, environ="HOME=/root\0LLAMAS_LAUNCH=db.v1\0")
    return parse_maps(MAPS)


def test_only_private_writable_anonymous_memory_is_in_scope(process):
    assert [(lo, hi) for lo, hi, _ in scoped_mappings(process)] == [
        (BASE, BASE + 2 * CHUNK_PAGES * PAGE), (0x40000000, 0x40001000)]


def test_pagemap_entries_are_read_at_their_virtual_page(tree, process):
    entries = read_pagemap(tree, 500, BASE + (CHUNK_PAGES - 1) * PAGE, BASE + (CHUNK_PAGES + 2) * PAGE)
    assert entries == [pagemap_entry(0x1000 + CHUNK_PAGES - 1, written=True), pagemap_entry(0x2000), 0]
    assert read_pagemap(tree, 999, BASE, BASE + PAGE) == []


@pytest.mark.parametrize("written, accessed, expected", [
    (1.0, 1.0, ("hot", "write-heavy")),
    (0.25, 0.4, ("warm", "write-heavy")),
    (0.24, 1.0, ("hot", "read-mostly")),
    (0.0, 0.01, ("warm", "read-mostly")),
    (0.0, 0.0, ("cold", "untouched")),
    (0.6, 0.0, ("hot", "write-heavy")),     # a write is an access, even where the accessed bit was missed
    (0.0, None, (None, "untouched")),       # accesses unmeasured: reads cannot be seen
    (0.01, None, (None, "read-mostly")),
])
def test_classes_follow_the_documented_shares(written, accessed, expected):
    assert classes(written, accessed) == expected


def test_damon_heat_takes_the_hottest_overlapping_region():
    regions = {"500": [{"start": BASE, "end": BASE + PAGE, "nr_accesses": 80, "age": 1},
                       {"start": BASE + PAGE, "end": BASE + 3 * CHUNK_PAGES * PAGE, "nr_accesses": 10, "age": 9}]}
    heat = DamonHeat(regions, 100)
    assert heat.share(500, BASE, []) == 0.8
    assert heat.share(500, BASE + CHUNK_PAGES * PAGE, []) == 0.1
    assert heat.share(500, BASE + 3 * CHUNK_PAGES * PAGE, []) == 0.0   # no region: DAMON saw no access
    assert heat.share(501, BASE, []) is None                           # a process DAMON did not watch


def test_without_idle_page_tracking_writes_alone_classify(tree, process):
    def locate(pid, addresses):
        return [1] * len(addresses)

    assert not IdleBitmap(tree).available
    chunks = measure(tree, 500, process, None, locate)
    assert [(c["start"], c["heat"], c["write"], c["pages"]) for c in chunks] == [
        (BASE, None, "write-heavy", CHUNK_PAGES), (BASE + CHUNK_PAGES * PAGE, None, "untouched", CHUNK_PAGES // 2),
        (0x40000000, None, "untouched", 1)]
    assert present_addresses(chunks[1])[:2] == [BASE + CHUNK_PAGES * PAGE, BASE + (CHUNK_PAGES + 2) * PAGE]
    assert len(present_addresses(chunks[1])) == CHUNK_PAGES // 2
    assert all(c["nodes"] == [1] * len(c["addresses"]) for c in chunks)
    assert chunks[0]["region_bytes"] == 2 * CHUNK_PAGES * PAGE


def test_a_chunk_is_located_from_a_sample_spread_over_it(tree, process):
    asked = []

    def locate(pid, addresses):
        asked.extend(addresses)
        return [0 if a < BASE + CHUNK_PAGES * PAGE // 2 else 1 for a in addresses]  # first half on node 0

    full, sparse, heap = measure(tree, 500, process, None, locate)
    assert len(asked) == 2 * SAMPLE_PAGES + 1  # never every page: a sample per chunk (all of a 1-page heap)
    assert len(full["addresses"]) == SAMPLE_PAGES and full["addresses"] == sorted(set(full["addresses"]))
    assert full["addresses"][0] == BASE and full["addresses"][-1] >= BASE + (CHUNK_PAGES - 32) * PAGE
    assert full["nodes"].count(0) == full["nodes"].count(1) == SAMPLE_PAGES // 2  # spread, so half and half
    assert all(a in present_addresses(sparse) for a in sparse["addresses"])  # only present pages are sampled
    assert heap["addresses"] == [0x40000000]


def test_arm_marks_present_frames_idle_then_clears_soft_dirty(tree, guest_root, process):
    bitmap_file = add_idle_bitmap(guest_root)
    bitmap = IdleBitmap(tree)
    arm(tree, 500, process, bitmap)
    assert (guest_root / "proc/500/clear_refs").read_text() == "4"
    marked = bitmap.idle(range(0x1000, 0x4000))
    assert marked == {0x1000 + i for i in range(CHUNK_PAGES)} | {0x2000 + i for i in range(0, CHUNK_PAGES, 2)} | {
        0x3000}
    # The kernel clears a frame's idle bit when it is accessed: here, every other present frame of the read
    # chunk.  The written chunk's frames stay marked, and count as accessed all the same: a write is an access.
    data = bytearray(bitmap_file.read_bytes())
    for pfn in range(0x2000, 0x2000 + CHUNK_PAGES, 4):
        data[pfn // 8] &= ~(1 << pfn % 8) & 0xFF
    bitmap_file.write_bytes(bytes(data))
    chunks = measure(tree, 500, process, bitmap, lambda pid, addresses: [0] * len(addresses))
    assert [(c["heat"], c["write"]) for c in chunks] == [("hot", "write-heavy"), ("hot", "read-mostly"),
                                                         ("cold", "untouched")]


def test_launch_name_comes_from_the_environment_run_as_sets(tree, process, guest_root):
    assert launch_name(tree, 500) == "db.v1"
    assert launch_name(tree, 300) is None  # no environ file: not launched by the agent


def test_chunks_end_at_2_mib_boundaries_as_huge_pages_do(tree, guest_root):
    # A 3 MiB mapping that starts 1 MiB past a boundary: chunks [+1, +2) and [+2, +4) MiB, never one that
    # shares a huge page with its neighbour (move_pages would move the huge page whole, back and forth).
    lo, hi = BASE + (1 << 20), BASE + (4 << 20)
    pages = {a: pagemap_entry(0x5000 + (a - lo) // PAGE, written=a < BASE + (2 << 20)) for a in range(lo, hi, PAGE)}
    add_mapped_process(guest_root, 600, "split", f"{lo:x}-{hi:x} rw-p 00000000 00:00 0\n", pages)
    chunks = measure(tree, 600, parse_maps((guest_root / "proc/600/maps").read_text()), None,
                     lambda pid, addresses: [0] * len(addresses))
    assert [(c["start"], c["pages"], c["write"]) for c in chunks] == [
        (lo, 256, "write-heavy"), (BASE + (2 << 20), CHUNK_PAGES, "untouched")]
    assert all(c["region_bytes"] == 3 << 20 for c in chunks)
