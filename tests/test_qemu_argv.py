"""build_argv and its helpers, argument by argument, for the shipped topologies."""

from __future__ import annotations

import pytest

from testbed import qemu_argv as q
from testbed.topology import Topology

NAMES = ["dram-only", "two-socket", "dram-cxl", "cxl-type3", "hbm-dram-cxl"]
CXL_DEVICE = ["cxl-type3"]
NO_CXL_DEVICE = [n for n in NAMES if n not in CXL_DEVICE]

# Total guest RAM QEMU is given with -m: ram-backed nodes only.
EXPECTED_MIB = {"dram-only": 1024, "two-socket": 1024, "dram-cxl": 2048, "cxl-type3": 1024, "hbm-dram-cxl": 2560}


# ---- helpers ------------------------------------------------------------


def values(argv: list[str], flag: str) -> list[str]:
    """Every argument that follows `flag`."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def value(argv: list[str], flag: str) -> str:
    found = values(argv, flag)
    assert len(found) == 1, f"{flag} given {len(found)} times: {found}"
    return found[0]


def numa(argv: list[str], kind: str) -> list[str]:
    return [v for v in values(argv, "-numa") if v.split(",", 1)[0] == kind]


def opts(option: str) -> list[tuple[str, str]]:
    """'node,a=1,b=2' -> [('a', '1'), ('b', '2')] (keys may repeat, e.g. cpus)."""
    return [tuple(part.split("=", 1)) for part in option.split(",")[1:]]


def devices(argv: list[str], driver: str) -> list[str]:
    return [v for v in values(argv, "-device") if v.split(",", 1)[0] == driver]


@pytest.fixture
def argv_for(load_topology, boot_spec):
    def _argv(name: str, **spec) -> tuple[Topology, list[str]]:
        topo = load_topology(name)
        return topo, q.build_argv(topo, boot_spec(**spec))

    return _argv


def _inline(nodes: list[dict], **extra) -> Topology:
    return Topology.model_validate(
        {"name": "inline", "description": "An inline test machine with enough words in it.", "nodes": nodes, **extra}
    )


# ---- _ranges and _opts --------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "ranges"),
    [
        ([0, 1, 2, 5], ["0-2", "5"]),
        ([0], ["0"]),
        ([0, 1], ["0-1"]),
        ([0, 2, 4], ["0", "2", "4"]),
        ([2, 3, 7, 8, 9], ["2-3", "7-9"]),
    ],
)
def test_ranges(cpus, ranges):
    assert q._ranges(cpus) == ranges


def test_opts():
    assert q._opts("pxb-cxl", bus_nr=12, id="cxl.0") == "pxb-cxl,bus-nr=12,id=cxl.0"
    assert q._opts("head") == "head"


# ---- whole argv ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_argv_frame(argv_for, boot_spec, name):
    _, argv = argv_for(name)
    spec = boot_spec()
    assert argv[0] == "qemu-system-x86_64"
    assert all(isinstance(a, str) for a in argv)
    assert value(argv, "-name") == "unit-test"
    assert {"-nodefaults", "-no-user-config"} <= set(argv)
    assert value(argv, "-display") == "none"
    assert value(argv, "-serial") == f"file:{spec.serial_log}"
    assert value(argv, "-qmp") == f"unix:{spec.qmp_socket},server=on,wait=off"
    assert value(argv, "-kernel") == str(spec.kernel)
    assert value(argv, "-initrd") == str(spec.initrd)


def test_build_argv_is_pure(load_topology, boot_spec):
    topo = load_topology("hbm-dram-cxl")
    spec = boot_spec()
    assert q.build_argv(topo, spec) == q.build_argv(topo, spec)


def test_custom_qemu_and_extra_args_last(argv_for):
    _, argv = argv_for("dram-only", qemu="/opt/qemu/bin/qemu-system-x86_64", extra_args=("-s", "-S"))
    assert argv[0] == "/opt/qemu/bin/qemu-system-x86_64"
    assert argv[-2:] == ["-s", "-S"]


@pytest.mark.parametrize("name", NAMES)
def test_memory_size_is_sum_of_ram_nodes(argv_for, name):
    topo, argv = argv_for(name)
    assert value(argv, "-m") == f"{EXPECTED_MIB[name]}M"
    assert sum(n.size_mib for n in topo.ram_nodes) == EXPECTED_MIB[name]


@pytest.mark.parametrize("name", NAMES)
def test_one_backend_and_numa_node_per_ram_node(argv_for, name):
    topo, argv = argv_for(name)
    backends = [v for v in values(argv, "-object") if v.startswith("memory-backend-ram,id=mem")]
    assert backends == [f"memory-backend-ram,id=mem{n.id},size={n.size_mib}M" for n in topo.ram_nodes]
    nodes = numa(argv, "node")
    assert len(nodes) == len(topo.ram_nodes)
    for option, node in zip(nodes, topo.ram_nodes):
        kv = opts(option)
        assert ("nodeid", str(node.id)) in kv
        assert ("memdev", f"mem{node.id}") in kv
        assert [v for k, v in kv if k == "cpus"] == (q._ranges(node.cpus) if node.cpus else [])
        initiators = [v for k, v in kv if k == "initiator"]
        if topo.hmat:
            assert initiators == [str(topo.initiator_of(node))]
        else:
            assert initiators == []


def test_numa_nodes_two_socket(argv_for):
    _, argv = argv_for("two-socket")
    assert numa(argv, "node") == [
        "node,nodeid=0,memdev=mem0,cpus=0-1,initiator=0",
        "node,nodeid=1,memdev=mem1,cpus=2-3,initiator=1",
    ]


def test_numa_nodes_hbm_dram_cxl(argv_for):
    _, argv = argv_for("hbm-dram-cxl")
    assert numa(argv, "node") == [
        "node,nodeid=0,memdev=mem0,cpus=0-1,initiator=0",
        "node,nodeid=1,memdev=mem1,initiator=0",
        "node,nodeid=2,memdev=mem2,initiator=0",
    ]


def test_numa_nodes_cxl_type3_only_ram_node(argv_for):
    _, argv = argv_for("cxl-type3")
    # No HMAT, and the CXL device's node is not a firmware NUMA node.
    assert numa(argv, "node") == ["node,nodeid=0,memdev=mem0,cpus=0-1"]


def test_split_cpu_ranges_become_repeated_cpus_options():
    topo = _inline(
        [
            {"id": 0, "kind": "dram", "size": "1G", "cpus": [0, 1, 2, 5]},
            {"id": 1, "kind": "dram", "size": "1G", "cpus": [3, 4]},
        ]
    )
    assert numa(q.numa_args(topo), "node")[0] == "node,nodeid=0,memdev=mem0,cpus=0-2,cpus=5"


@pytest.mark.parametrize("name", NAMES)
def test_distances_symmetric_and_ram_only(argv_for, name):
    topo, argv = argv_for(name)
    dists = set()
    for option in numa(argv, "dist"):
        kv = dict(opts(option))
        dists.add((int(kv["src"]), int(kv["dst"]), int(kv["val"])))
    ram_ids = {n.id for n in topo.ram_nodes}
    for src, dst, val in dists:
        assert src in ram_ids and dst in ram_ids and src != dst
        assert (dst, src, val) in dists
        assert val == topo.distance(src, dst)
    if topo.distances is not None:
        assert len(dists) == len(ram_ids) * (len(ram_ids) - 1)
    else:
        assert dists == set()


def test_distances_two_socket(argv_for):
    _, argv = argv_for("two-socket")
    assert numa(argv, "dist") == ["dist,src=0,dst=1,val=21", "dist,src=1,dst=0,val=21"]


def test_distances_hbm_dram_cxl(argv_for):
    _, argv = argv_for("hbm-dram-cxl")
    assert sorted(numa(argv, "dist")) == sorted(
        f"dist,src={a},dst={b},val={v}"
        for a, b, v in [(0, 1, 12), (1, 0, 12), (0, 2, 20), (2, 0, 20), (1, 2, 22), (2, 1, 22)]
    )


def test_distances_cxl_type3_skip_device_node(argv_for):
    topo, argv = argv_for("cxl-type3")
    assert topo.distances is not None
    assert numa(argv, "dist") == []


def test_no_distances_without_matrix(argv_for):
    topo, argv = argv_for("dram-only")
    assert topo.distances is None
    assert numa(argv, "dist") == []


@pytest.mark.parametrize("name", NAMES)
def test_hmat_lb_entries(argv_for, name):
    topo, argv = argv_for(name)
    lb = numa(argv, "hmat-lb")
    assert len(lb) == 4 * len(topo.hmat)
    for e in topo.hmat:
        pair = f"hmat-lb,initiator={e.initiator},target={e.target},hierarchy=memory"
        assert f"{pair},data-type=read-latency,latency={e.read_latency_ns}" in lb
        assert f"{pair},data-type=write-latency,latency={e.write_latency_ns}" in lb
        assert f"{pair},data-type=read-bandwidth,bandwidth={e.read_bandwidth_mbps}M" in lb
        assert f"{pair},data-type=write-bandwidth,bandwidth={e.write_bandwidth_mbps}M" in lb
    machine = value(argv, "-machine").split(",")
    assert ("hmat=on" in machine) == bool(topo.hmat)


def test_hmat_lb_values_hbm_dram_cxl(argv_for):
    _, argv = argv_for("hbm-dram-cxl")
    lb = numa(argv, "hmat-lb")
    assert "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=read-bandwidth,bandwidth=120000M" in lb
    assert "hmat-lb,initiator=0,target=2,hierarchy=memory,data-type=read-latency,latency=200" in lb


def test_hmat_lb_values_dram_nvm(load_topology):
    lb = q.hmat_args(load_topology("dram-nvm"))
    assert "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=write-latency,latency=900" in lb
    assert "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=write-bandwidth,bandwidth=2300M" in lb


@pytest.mark.parametrize("name", NAMES)
def test_numa_order_nodes_then_dist_then_hmat(argv_for, name):
    # QEMU resolves dist and hmat-lb against nodes declared before them.
    _, argv = argv_for(name)
    kinds = [v.split(",", 1)[0] for v in values(argv, "-numa")]
    assert kinds == sorted(kinds, key=["node", "dist", "hmat-lb"].index)


# ---- machine, cpu, smp --------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_accel_tcg_uses_cpu_max(argv_for, name):
    _, argv = argv_for(name, accel="tcg")
    assert value(argv, "-cpu").split(",")[0] == "max"
    assert value(argv, "-accel") == "tcg"


@pytest.mark.parametrize("name", NAMES)
def test_accel_kvm_uses_cpu_host(argv_for, name):
    _, argv = argv_for(name, accel="kvm")
    assert value(argv, "-cpu").split(",")[0] == "host"
    assert value(argv, "-accel") == "kvm"


def test_tcg_single_thread_and_plugins(boot_spec, load_topology):
    spec = boot_spec(accel="tcg", tcg_single_thread=True, plugins=("/p/liblat.so,arg=1", "/p/two.so"))
    argv = q.build_argv(load_topology("dram-cxl"), spec)
    assert value(argv, "-accel") == "tcg,thread=single"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-plugin"] == ["/p/liblat.so,arg=1", "/p/two.so"]


def test_single_thread_ignored_under_kvm(boot_spec, load_topology):
    argv = q.build_argv(load_topology("dram-only"), boot_spec(accel="kvm", tcg_single_thread=True))
    assert value(argv, "-accel") == "kvm"


@pytest.mark.parametrize(
    ("name", "smp"),
    [
        ("dram-only", "2,sockets=1,cores=2,threads=1"),
        ("two-socket", "4,sockets=2,cores=2,threads=1"),
        ("dram-cxl", "2,sockets=1,cores=2,threads=1"),
        ("cxl-type3", "2,sockets=1,cores=2,threads=1"),
        ("hbm-dram-cxl", "2,sockets=1,cores=2,threads=1"),
    ],
)
def test_smp(argv_for, name, smp):
    _, argv = argv_for(name)
    assert value(argv, "-smp") == smp


def test_smp_uneven_cpu_nodes_single_socket():
    topo = _inline(
        [
            {"id": 0, "kind": "dram", "size": "1G", "cpus": [0, 1, 2]},
            {"id": 1, "kind": "dram", "size": "1G", "cpus": [3]},
        ]
    )
    args = q.machine_args(topo, "tcg")
    assert args[args.index("-smp") + 1] == "4,sockets=1,cores=4,threads=1"


# ---- CXL ----------------------------------------------------------------


@pytest.mark.parametrize("accel", ["tcg", "kvm"])
def test_cxl_type3_devices(argv_for, accel):
    topo, argv = argv_for("cxl-type3", accel=accel)
    node = topo.cxl_nodes[0]
    assert "cxl=on" in value(argv, "-machine").split(",")
    assert value(argv, "-cpu") == ("host" if accel == "kvm" else "max") + ",hypervisor=off"
    assert devices(argv, "pxb-cxl") == ["pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.0"]
    assert devices(argv, "cxl-rp") == ["cxl-rp,port=0,bus=cxl.0,id=cxl_rp0,chassis=0,slot=2"]
    assert devices(argv, "cxl-type3") == ["cxl-type3,bus=cxl_rp0,volatile-memdev=cxlmem0,id=cxl-mem0"]
    assert f"memory-backend-ram,id=cxlmem0,share=on,size={node.size_mib}M" in values(argv, "-object")
    assert value(argv, "-M") == "cxl-fmw.0.targets.0=cxl.0,cxl-fmw.0.size=512M"


def test_cxl_type3_virtio_and_swiotlb(argv_for):
    _, argv = argv_for("cxl-type3")
    virtio = devices(argv, "virtio-blk-pci") + devices(argv, "virtio-net-pci")
    assert len(virtio) == 2
    for dev in virtio:
        assert "iommu_platform=on" in dev.split(",")
        assert "bus=pcie.0" in dev.split(",")
    append = value(argv, "-append").split()
    assert "swiotlb=force" in append


@pytest.mark.parametrize("name", NO_CXL_DEVICE)
def test_no_cxl_without_cxl_device(argv_for, name):
    _, argv = argv_for(name)
    assert "cxl=on" not in value(argv, "-machine").split(",")
    assert "hypervisor=off" not in value(argv, "-cpu")
    assert "-M" not in argv
    for driver in ("pxb-cxl", "cxl-rp", "cxl-type3"):
        assert devices(argv, driver) == []
    assert not [v for v in values(argv, "-object") if "cxlmem" in v]
    assert not [v for v in values(argv, "-device") if "iommu_platform" in v]
    assert "swiotlb" not in value(argv, "-append")


def test_cxl_args_empty():
    assert q.cxl_args([]) == []


def test_cxl_args_two_devices():
    topo = _inline(
        [
            {"id": 0, "kind": "dram", "size": "1G", "cpus": [0]},
            {"id": 1, "kind": "cxl", "size": "256M", "backing": "cxl-type3"},
            {"id": 2, "kind": "cxl", "size": "1G", "backing": "cxl-type3"},
        ]
    )
    args = q.cxl_args(topo.cxl_nodes)
    assert devices(args, "pxb-cxl") == ["pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.0"]
    assert devices(args, "cxl-rp") == [
        "cxl-rp,port=0,bus=cxl.0,id=cxl_rp0,chassis=0,slot=2",
        "cxl-rp,port=1,bus=cxl.0,id=cxl_rp1,chassis=0,slot=3",
    ]
    assert devices(args, "cxl-type3") == [
        "cxl-type3,bus=cxl_rp0,volatile-memdev=cxlmem0,id=cxl-mem0",
        "cxl-type3,bus=cxl_rp1,volatile-memdev=cxlmem1,id=cxl-mem1",
    ]
    assert values(args, "-object") == [
        "memory-backend-ram,id=cxlmem0,share=on,size=256M",
        "memory-backend-ram,id=cxlmem1,share=on,size=1024M",
    ]
    assert value(args, "-M") == (
        "cxl-fmw.0.targets.0=cxl.0,cxl-fmw.0.size=256M,cxl-fmw.1.targets.0=cxl.0,cxl-fmw.1.size=1024M"
    )
    # -m covers only the ram node; device memory comes from its own backends.
    m = q.machine_args(topo, "tcg")
    assert m[m.index("-m") + 1] == "1024M"


# ---- devices and kernel -------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_hostfwd_binds_loopback_only(argv_for, name):
    _, argv = argv_for(name, ssh_port=2222)
    netdev = value(argv, "-netdev")
    parts = netdev.split(",")
    assert parts[0] == "user"
    assert "restrict=on" in parts
    hostfwd = [p for p in parts if p.startswith("hostfwd=")]
    assert hostfwd == ["hostfwd=tcp:127.0.0.1:2222-:22"]
    assert "0.0.0.0" not in netdev


@pytest.mark.parametrize("name", NAMES)
def test_root_drive_is_snapshot(argv_for, boot_spec, name):
    _, argv = argv_for(name)
    drive = value(argv, "-drive").split(",")
    assert drive[0] == f"file={boot_spec().rootfs}"
    assert {"format=raw", "if=none", "id=root", "snapshot=on"} <= set(drive)
    assert devices(argv, "virtio-blk-pci")[0].startswith("virtio-blk-pci,drive=root,bus=pcie.0")
    assert devices(argv, "virtio-net-pci")[0].startswith("virtio-net-pci,netdev=net0,bus=pcie.0")


def test_kernel_append(argv_for):
    _, argv = argv_for("dram-only", append="llamas.debug=1")
    append = value(argv, "-append")
    assert append.startswith(q.BASE_APPEND)
    assert append.endswith("llamas.debug=1")
    assert "  " not in append


def test_kernel_append_cxl_with_extra(argv_for):
    _, argv = argv_for("cxl-type3", append="llamas.debug=1")
    assert value(argv, "-append") == f"{q.BASE_APPEND} swiotlb=force llamas.debug=1"


def test_no_initrd(argv_for):
    _, argv = argv_for("dram-only", initrd=None)
    assert "-initrd" not in argv


def test_kernel_args_helper(load_topology, boot_spec):
    spec = boot_spec()
    assert q.kernel_args(load_topology("two-socket"), spec) == [
        "-kernel", str(spec.kernel), "-append", q.BASE_APPEND, "-initrd", str(spec.initrd),
    ]
