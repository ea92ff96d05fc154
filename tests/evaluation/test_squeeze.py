"""Parsing a node's meminfo and naming its hugetlb pool, on the host (the VM test holds memory for real)."""

from __future__ import annotations

import pytest

from testbed.evaluation import squeeze

MEMINFO = """Node 1 MemTotal:        1048576 kB
Node 1 MemFree:          1012344 kB
Node 1 MemUsed:            36232 kB
"""


def test_free_mib_of_the_named_node():
    assert squeeze.free_mib(MEMINFO, 1) == 1012344 // 1024
    with pytest.raises(squeeze.SqueezeError, match="no 'Node 0 MemFree' line"):
        squeeze.free_mib(MEMINFO, 0)


def test_the_pool_is_the_nodes_2mib_one():
    assert squeeze.pool_path(1) == "/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"
