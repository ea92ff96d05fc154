"""Turning emulated CXL type-3 devices into NUMA nodes inside the guest.

QEMU gives the guest a CXL host bridge, a root port and a volatile type-3
device per cxl-type3 node, each behind its own fixed memory window (root
decoder decoder0.K).  Here, over SSH, the testbed does what an administrator
would: create a RAM region on that window (`cxl create-region -t ram`), make
sure its dax device is onlined as system RAM, and check that the memory
landed on the NUMA node the topology names.
"""

from __future__ import annotations

import json

from .ssh import GuestShell
from .topology import Topology


class CxlSetupError(RuntimeError):
    """A CXL device could not be turned into the node the topology asks for."""


def _dax_devices(shell: GuestShell) -> list[dict]:
    out = shell.run("daxctl list -u").stdout.strip()
    devices = json.loads(out) if out else []
    return devices if isinstance(devices, list) else [devices]


def online_type3_nodes(shell: GuestShell, topology: Topology) -> list[dict]:
    """Create one RAM region per cxl-type3 node and online it; return the regions."""
    regions = []
    for k, node in enumerate(topology.cxl_nodes):
        created = shell.run(f"cxl create-region -t ram -d decoder0.{k} -m mem{k} -w 1", check=False)
        if not created.ok:
            raise CxlSetupError(f"node {node.id}: cxl create-region on decoder0.{k} failed: {created.stderr.strip()}")
        region = json.loads(created.stdout)
        regions.append(region)
    for dev in _dax_devices(shell):
        if dev.get("mode") != "system-ram":
            shell.run(f"daxctl reconfigure-device --mode=system-ram {dev['chardev']}")
    nodes = {dev["target_node"] for dev in _dax_devices(shell) if dev.get("mode") == "system-ram"}
    expected = {n.id for n in topology.cxl_nodes}
    if nodes != expected:
        raise CxlSetupError(f"CXL memory came up on nodes {sorted(nodes)}, the topology expects {sorted(expected)}")
    return regions
