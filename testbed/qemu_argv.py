"""The QEMU command-line builder: a pure function from a topology to argv.

Nothing here touches the host; `build_argv` is unit tested argument by
argument.  The machine is a q35 with one memory backend per NUMA node, SLIT
distances, HMAT latency/bandwidth, and, for cxl-type3 nodes, a CXL host
bridge with one root port, one volatile type-3 device and one fixed memory
window per node (Linux gives each window its own NUMA node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .topology import Node, Topology

Accel = Literal["kvm", "tcg"]

# Kernel arguments for every boot: a serial console, the lean init, and no
# work the testbed never needs (mitigations cost a lot under TCG).
BASE_APPEND = (
    "console=ttyS0 root=/dev/vda rw rootwait init=/sbin/llamas-init "
    "quiet mitigations=off nokaslr random.trust_cpu=on 8250.nr_uarts=1"
)
# QEMU serves CXL memory through its I/O path; DMA into it breaks virtio.
# Bounce every DMA through swiotlb, which sits in low (DRAM) memory.
CXL_APPEND = "swiotlb=force"


@dataclass(frozen=True)
class BootSpec:
    """Everything besides the topology that one QEMU process needs."""

    kernel: Path
    initrd: Path | None
    rootfs: Path
    ssh_port: int
    qmp_socket: Path
    serial_log: Path
    accel: Accel
    name: str
    append: str = ""
    qemu: str = "qemu-system-x86_64"
    # One TCG thread for all vCPUs: needed by plugins that look up guest
    # physical addresses (multi-threaded TCG crashed QEMU in iotlb_to_section).
    tcg_single_thread: bool = False
    # Full `-plugin` option values, e.g. "/path/libfoo.so,arg=value".
    plugins: tuple[str, ...] = field(default_factory=tuple)
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def _ranges(values: list[int]) -> list[str]:
    """[0, 1, 2, 5] -> ['0-2', '5']: QEMU's syntax for CPU lists."""
    out: list[str] = []
    start = prev = values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return out


def _opts(head: str, **kv: object) -> str:
    return ",".join([head] + [f"{k.replace('_', '-')}={v}" for k, v in kv.items()])


def accel_args(spec: BootSpec) -> list[str]:
    if spec.accel == "tcg" and spec.tcg_single_thread:
        return ["-accel", "tcg,thread=single"]
    return ["-accel", spec.accel]


def machine_args(topo: Topology, accel: Accel) -> list[str]:
    flags = ["q35"]
    if topo.hmat:
        flags.append("hmat=on")
    if topo.cxl_nodes:
        flags.append("cxl=on")
    cpu_nodes = [n for n in topo.nodes if n.cpus]
    per_node = {len(n.cpus) for n in cpu_nodes}
    sockets = len(cpu_nodes) if len(per_node) == 1 else 1
    # The kernel refuses CXL region commits (cache invalidation) under a hypervisor bit.
    cpu = ("host" if accel == "kvm" else "max") + (",hypervisor=off" if topo.cxl_nodes else "")
    total_mib = sum(n.size_mib for n in topo.ram_nodes)
    return [
        "-machine", ",".join(flags),
        "-cpu", cpu,
        "-smp", f"{topo.cpu_count},sockets={sockets},cores={topo.cpu_count // sockets},threads=1",
        "-m", f"{total_mib}M",
    ]


def numa_args(topo: Topology) -> list[str]:
    args: list[str] = []
    for node in topo.ram_nodes:
        args += ["-object", f"memory-backend-ram,id=mem{node.id},size={node.size_mib}M"]
        opts = f"node,nodeid={node.id},memdev=mem{node.id}"
        opts += "".join(f",cpus={r}" for r in _ranges(node.cpus)) if node.cpus else ""
        if topo.hmat:
            opts += f",initiator={topo.initiator_of(node)}"
        args += ["-numa", opts]
    ram_ids = [n.id for n in topo.ram_nodes]
    if topo.distances is not None:
        for a in ram_ids:
            for b in ram_ids:
                if a != b:
                    args += ["-numa", f"dist,src={a},dst={b},val={topo.distance(a, b)}"]
    return args


def hmat_args(topo: Topology) -> list[str]:
    args: list[str] = []
    for e in topo.hmat:
        pair = f"hmat-lb,initiator={e.initiator},target={e.target},hierarchy=memory"
        args += [
            "-numa", f"{pair},data-type=read-latency,latency={e.read_latency_ns}",
            "-numa", f"{pair},data-type=write-latency,latency={e.write_latency_ns}",
            "-numa", f"{pair},data-type=read-bandwidth,bandwidth={e.read_bandwidth_mbps}M",
            "-numa", f"{pair},data-type=write-bandwidth,bandwidth={e.write_bandwidth_mbps}M",
        ]
    return args


def cxl_args(nodes: list[Node]) -> list[str]:
    """One host bridge; per node a root port, a volatile type-3 device and a window."""
    if not nodes:
        return []
    args = ["-device", "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.0"]
    windows = []
    for k, node in enumerate(nodes):
        args += [
            "-object", f"memory-backend-ram,id=cxlmem{k},share=on,size={node.size_mib}M",
            "-device", f"cxl-rp,port={k},bus=cxl.0,id=cxl_rp{k},chassis=0,slot={k + 2}",
            "-device", f"cxl-type3,bus=cxl_rp{k},volatile-memdev=cxlmem{k},id=cxl-mem{k}",
        ]
        windows.append(f"cxl-fmw.{k}.targets.0=cxl.0,cxl-fmw.{k}.size={node.size_mib}M")
    return args + ["-M", ",".join(windows)]


def device_args(topo: Topology, spec: BootSpec) -> list[str]:
    # With a CXL bridge present, virtio devices must sit on pcie.0; with CXL
    # memory, they must DMA through the platform (swiotlb) path.
    virtio = ",bus=pcie.0" + (",disable-legacy=on,iommu_platform=on" if topo.cxl_nodes else "")
    return [
        "-drive", f"file={spec.rootfs},format=raw,if=none,id=root,snapshot=on",
        "-device", f"virtio-blk-pci,drive=root{virtio}",
        # restrict=on: the guest reaches nothing but the forwarded port.
        "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=net0{virtio}",
    ]


def kernel_args(topo: Topology, spec: BootSpec) -> list[str]:
    append = " ".join(a for a in (BASE_APPEND, CXL_APPEND if topo.cxl_nodes else "", spec.append) if a)
    args = ["-kernel", str(spec.kernel), "-append", append]
    if spec.initrd is not None:
        args += ["-initrd", str(spec.initrd)]
    return args


def build_argv(topo: Topology, spec: BootSpec) -> list[str]:
    """The complete QEMU argv that boots `topo` as described by `spec`."""
    return [
        spec.qemu,
        "-name", spec.name,
        "-nodefaults", "-no-user-config", "-display", "none",
        *accel_args(spec),
        *machine_args(topo, spec.accel),
        *numa_args(topo),
        *hmat_args(topo),
        *cxl_args(topo.cxl_nodes),
        *device_args(topo, spec),
        *kernel_args(topo, spec),
        "-serial", f"file:{spec.serial_log}",
        "-qmp", f"unix:{spec.qmp_socket},server=on,wait=off",
        *[arg for plugin in spec.plugins for arg in ("-plugin", plugin)],
        *spec.extra_args,
    ]
