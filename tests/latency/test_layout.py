"""Guest physical ranges of each node: computed from the topology, checked against the guest's SRAT."""

from __future__ import annotations

import pytest

from testbed.latency import layout
from testbed.latency.layout import LayoutError, Range
from testbed.topology import load

GIB = 1 << 30

# The SRAT lines Linux 6.12 logs for dram-cxl (node 0 leaves out the legacy VGA/BIOS hole).
DRAM_CXL_DMESG = """\
[    0.012345] ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0009ffff]
[    0.012346] ACPI: SRAT: Node 0 PXM 0 [mem 0x00100000-0x3fffffff]
[    0.012347] ACPI: SRAT: Node 1 PXM 1 [mem 0x40000000-0x7fffffff]
"""


def _two_nodes(write_topology, size0: str, size1: str):
    text = f'''
description = "a test machine with two memory nodes of the given sizes, nothing more to say"
[[nodes]]
id = 0
kind = "dram"
size = "{size0}"
cpus = [0]
[[nodes]]
id = 1
kind = "nvm"
size = "{size1}"
'''
    return load(write_topology(text, name="two"))


def test_small_machine_lies_below_4g_in_node_order(load_topology):
    assert layout.ram_ranges(load_topology("dram-cxl")) == [Range(0, GIB, 0), Range(GIB, 2 * GIB, 1)]


def test_big_machine_splits_at_2g_and_resumes_at_4g(write_topology):
    # 3 GiB of RAM is over q35's 2.75 GiB threshold: 2 GiB below 4 GiB, the rest from 4 GiB.
    topo = _two_nodes(write_topology, "1G", "2G")
    assert layout.ram_ranges(topo) == [Range(0, GIB, 0), Range(GIB, 2 * GIB, 1), Range(4 * GIB, 5 * GIB, 1)]


def test_machine_under_the_threshold_keeps_up_to_2_75g_low(write_topology):
    topo = _two_nodes(write_topology, "2G", "512M")
    assert layout.ram_ranges(topo) == [Range(0, 2 * GIB, 0), Range(2 * GIB, 2 * GIB + (512 << 20), 1)]


def test_plugin_argument_is_hex_base_end_node():
    assert Range(0x40000000, 0x80000000, 1).plugin_arg() == "range=40000000:80000000:1"


def test_srat_lines_are_parsed_and_merged():
    assert layout.srat_ranges(DRAM_CXL_DMESG) == [Range(0, 0xA0000, 0), Range(0x100000, GIB, 0),
                                                  Range(GIB, 2 * GIB, 1)]


def test_guest_srat_matching_the_computed_layout_passes(load_topology):
    assert layout.check_against_guest(load_topology("dram-cxl"), DRAM_CXL_DMESG) == layout.ram_ranges(
        load_topology("dram-cxl"))


def test_guest_srat_with_other_node_sizes_is_refused(load_topology):
    shifted = DRAM_CXL_DMESG.replace("0x3fffffff", "0x5fffffff").replace("0x40000000", "0x60000000")
    with pytest.raises(LayoutError, match="node 0"):
        layout.check_against_guest(load_topology("dram-cxl"), shifted)


def test_guest_srat_missing_a_node_is_refused(load_topology):
    only_node0 = "\n".join(DRAM_CXL_DMESG.splitlines()[:2])
    with pytest.raises(LayoutError, match="covers only"):
        layout.check_against_guest(load_topology("dram-cxl"), only_node0)


def test_no_srat_lines_is_a_clear_error(load_topology):
    with pytest.raises(LayoutError, match="no 'ACPI: SRAT: Node' lines"):
        layout.check_against_guest(load_topology("dram-cxl"), "[    0.0] Linux version 6.12\n")


def test_cxl_windows_come_from_iomem_in_window_order(load_topology):
    iomem = """\
00000000-00000fff : Reserved
290000000-38fffffff : CXL Window 0
  290000000-29fffffff : region0
"""
    topo = load_topology("cxl-type3")
    window_node = topo.cxl_nodes[0].id
    assert layout.cxl_window_ranges(iomem, topo) == [Range(0x290000000, 0x390000000, window_node)]
