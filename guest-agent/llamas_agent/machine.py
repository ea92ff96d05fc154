"""Gathering the machine as the kernel sees it: nodes, CPUs, memory, distances, HMAT, tiers, CXL."""

import os

from . import MACHINE_SCHEMA_VERSION, zoneinfo
from .sysfs import Tree, numbered, parse_cpulist

NODE_DIR = "sys/devices/system/node"
TIER_DIR = "sys/devices/virtual/memory_tiering"
CXL_DIR = "sys/bus/cxl/devices"
DAX_DIR = "sys/bus/dax/devices"
ACCESS_FIELDS = ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth")


def _meminfo_kib(tree, node_name):
    """{'MemTotal': kB, 'MemFree': kB, ...} from a node's meminfo."""
    fields = {}
    for line in (tree.read(NODE_DIR, node_name, "meminfo", default="") or "").splitlines():
        # "Node 0 MemTotal:       1012340 kB"
        parts = line.split()
        if len(parts) >= 4 and parts[3].isdigit():
            fields[parts[2].rstrip(":")] = int(parts[3])
    return fields


def _access0(tree, node_name):
    """HMAT access class 0 (the nearest initiator): ns and MB/s, or None if absent."""
    base = (NODE_DIR, node_name, "access0", "initiators")
    values = {f: tree.read_int(*base, f) for f in ACCESS_FIELDS}
    if all(v is None for v in values.values()):
        return None
    values["initiators"] = [n for n, _ in numbered(tree.listdir(*base), "node")]
    return values


def _tiers(tree):
    """{node: tier id} from the memory tiering devices."""
    tier_of = {}
    for tier_id, name in numbered(tree.listdir(TIER_DIR), "memory_tier"):
        for node in parse_cpulist(tree.read(TIER_DIR, name, "nodelist", default="")):
            tier_of[node] = tier_id
    return tier_of


def _node_meminfo(tree):
    """[{"id", "mem_total_kib", "mem_free_kib"}] per node."""
    out = []
    for node_id, name in numbered(tree.listdir(NODE_DIR), "node"):
        mem = _meminfo_kib(tree, name)
        out.append({"id": node_id, "mem_total_kib": mem.get("MemTotal", 0), "mem_free_kib": mem.get("MemFree", 0)})
    return out


def held_back_kib(tree):
    """{node: KiB of its MemFree under the zones' high watermarks and reserves} (zoneinfo.held_back_pages;
    {} where /proc/zoneinfo is not there to read)."""
    zones = zoneinfo.parse(tree.read("proc", "zoneinfo", default=""))
    return {node: zoneinfo.held_back_pages(zones, node) * zoneinfo.PAGE_KIB for node in {z.node for z in zones}}


def node_memory(tree):
    """[{"id", "mem_total_kib", "mem_free_kib", "held_back_kib"}] per node: all a placement round asks of
    the nodes, each round."""
    held = held_back_kib(tree)
    return [{**mem, "held_back_kib": held.get(mem["id"], 0)} for mem in _node_meminfo(tree)]


def gather_nodes(tree):
    """Every node's memory with its CPUs, distances, HMAT access class 0 and memory tier."""
    tier_of = _tiers(tree)
    nodes = []
    for mem in _node_meminfo(tree):
        name = f"node{mem['id']}"
        distances = [int(d) for d in (tree.read(NODE_DIR, name, "distance", default="") or "").split()]
        nodes.append({
            "id": mem["id"],
            "cpus": parse_cpulist(tree.read(NODE_DIR, name, "cpulist", default="")),
            "mem_total_kib": mem["mem_total_kib"],
            "mem_free_kib": mem["mem_free_kib"],
            "distances": distances,
            "access0": _access0(tree, name),
            "memory_tier": tier_of.get(mem["id"]),
        })
    return nodes


def gather_cxl(tree):
    """CXL memory devices, regions and the dax devices that put them online."""
    names = tree.listdir(CXL_DIR)
    memdevs = [{"name": n, "ram_size": int(tree.read(CXL_DIR, n, "ram", "size", default="0"), 0)}
               for _, n in numbered(names, "mem")]
    regions = []
    for _, n in numbered(names, "region"):
        regions.append({
            "name": n,
            "size": int(tree.read(CXL_DIR, n, "size", default="0"), 0),
            "mode": tree.read(CXL_DIR, n, "mode"),
            "committed": tree.read(CXL_DIR, n, "commit") == "1",
        })
    dax = []
    for name in tree.listdir(DAX_DIR, prefix="dax"):
        dax.append({
            "name": name,
            "target_node": tree.read_int(DAX_DIR, name, "target_node"),
            "size": tree.read_int(DAX_DIR, name, "size", default=0),
            "system_ram": _driver(tree, name) == "kmem",
        })
    return {"memdevs": memdevs, "regions": regions, "dax": dax}


def _driver(tree, dax_name):
    link = tree.path(DAX_DIR, dax_name, "driver")
    return os.path.basename(os.path.realpath(link)) if os.path.islink(link) else ""


def gather_machine(tree=None):
    """The whole machine view as one JSON-ready dict."""
    tree = tree or Tree()
    return {
        "schema_version": MACHINE_SCHEMA_VERSION,
        "kernel": tree.read("proc/sys/kernel/osrelease"),
        "nodes": gather_nodes(tree),
        "cxl": gather_cxl(tree),
    }
