"""The topology schema and loader: shipped files load, derived views, and errors that name file, field and value."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import ValidationError

from testbed import topology as t
from testbed.topology import NodeKind, Topology, TopologyError

SHIPPED = ["cxl-type3", "dram-cxl", "dram-only", "dram-nvm", "hbm-dram-cxl", "hybrid-cores", "hybrid-tiered",
           "two-socket"]

DESCRIPTION = 'description = "A test machine with enough words in its description to pass."\n'

DRAM0 = """
[[nodes]]
id = 0
kind = "dram"
size = "1G"
cpus = [0, 1]
"""


def _hmat(initiator: int, target: int, lat: int = 100, bw: int = 30000) -> str:
    return f"""
[[hmat]]
initiator = {initiator}
target = {target}
read_latency_ns = {lat}
write_latency_ns = {lat}
read_bandwidth_mbps = {bw}
write_bandwidth_mbps = {bw}
"""


def _node(node_id: int, kind: str = "dram", size: str = "512M", cpus: list[int] | None = None,
          backing: str | None = None, extra: str = "") -> str:
    text = f'\n[[nodes]]\nid = {node_id}\nkind = "{kind}"\nsize = "{size}"\n'
    if cpus is not None:
        text += f"cpus = {cpus}\n"
    if backing is not None:
        text += f'backing = "{backing}"\n'
    return text + extra


def _model(**overrides) -> Topology:
    data = {
        "name": "inline",
        "description": "An inline test machine with enough words in its description.",
        "nodes": [{"id": 0, "kind": "dram", "size": "1G", "cpus": [0, 1]}],
    }
    data.update(overrides)
    return Topology.model_validate(data)


def _entry(initiator: int, target: int, lat: int, bw: int = 30000) -> dict:
    return {
        "initiator": initiator,
        "target": target,
        "read_latency_ns": lat,
        "write_latency_ns": lat,
        "read_bandwidth_mbps": bw,
        "write_bandwidth_mbps": bw,
    }


def _fails(path, *substrings: str) -> str:
    """Load `path`, expect a TopologyError naming the file and every substring; return the message."""
    with pytest.raises(TopologyError) as info:
        t.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for s in substrings:
        assert s in message, f"{s!r} not in {message!r}"
    return message


# ---- shipped files ------------------------------------------------------


def test_shipped_topologies_are_available():
    assert set(SHIPPED) <= set(t.available())


@pytest.mark.parametrize("name", t.available())
def test_every_shipped_file_loads(name):
    path = t.resolve(name)
    topo = t.load(path)
    assert topo.name == name == path.stem
    assert len(topo.description.strip()) >= 40
    assert topo.sources, "cite where the figures come from"
    assert topo.nodes[0].cpus
    assert topo.cpu_count == len({c for n in topo.nodes for c in n.cpus})
    # Every ram node's numbers come from HMAT when the file uses it.
    if topo.hmat:
        for node in topo.ram_nodes:
            assert topo.best_hmat(node) is not None, node


def test_resolve_maps_names_and_paths(tmp_path):
    assert t.resolve("dram-cxl") == t.TOPOLOGY_DIR / "dram-cxl.toml"
    assert t.resolve("topologies/dram-cxl.toml").name == "dram-cxl.toml"
    other = tmp_path / "x.toml"
    assert t.resolve(str(other)) == other


def test_digest_is_content_hash(tmp_path):
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text("same")
    b.write_text("same")
    assert t.digest(a) == t.digest(b)
    assert len(t.digest(a)) == 64
    b.write_text("different")
    assert t.digest(a) != t.digest(b)


def test_dram_only(load_topology):
    topo = load_topology("dram-only")
    assert len(topo.nodes) == 1
    node = topo.nodes[0]
    assert (node.kind, node.size_mib, node.cpus, node.tier) == (NodeKind.DRAM, 1024, [0, 1], 0)
    assert topo.distance(0, 0) == 10
    entry = topo.best_hmat(node)
    assert (entry.read_latency_ns, entry.read_bandwidth_mbps) == (100, 30000)


def test_two_socket(load_topology):
    topo = load_topology("two-socket")
    assert [n.cpus for n in topo.nodes] == [[0, 1], [2, 3]]
    assert [n.size_mib for n in topo.nodes] == [512, 512]
    assert all(n.kind == NodeKind.DRAM for n in topo.nodes)
    assert topo.distance(0, 1) == topo.distance(1, 0) == 21
    assert {(e.initiator, e.target) for e in topo.hmat} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for node in topo.nodes:
        assert topo.initiator_of(node) == node.id
        local = topo.best_hmat(node)
        assert (local.initiator, local.target) == (node.id, node.id)
        remote = next(e for e in topo.hmat if e.target == node.id and e.initiator != node.id)
        assert local.read_latency_ns < remote.read_latency_ns
        assert local.read_bandwidth_mbps > remote.read_bandwidth_mbps


def test_dram_nvm(load_topology):
    topo = load_topology("dram-nvm")
    dram, nvm = topo.nodes
    assert nvm.kind == NodeKind.NVM and not nvm.cpus and nvm.size_mib == 1024
    assert (dram.tier, nvm.tier) == (0, 1)
    assert topo.distance(0, 1) in (17, 20)
    entry = topo.best_hmat(nvm)
    assert entry.initiator == 0
    assert entry.write_latency_ns > entry.read_latency_ns > topo.best_hmat(dram).read_latency_ns
    assert entry.read_bandwidth_mbps > entry.write_bandwidth_mbps


def test_hbm_dram_cxl(load_topology):
    topo = load_topology("hbm-dram-cxl")
    assert [n.kind for n in topo.nodes] == [NodeKind.DRAM, NodeKind.HBM, NodeKind.CXL]
    assert [n.cpus for n in topo.nodes] == [[0, 1], [], []]
    assert [n.tier for n in topo.nodes] == [1, 0, 2], "HBM above DRAM above CXL, as the kernel ranked them"
    assert topo.cxl_nodes == [] and topo.ram_nodes == topo.nodes
    for a in range(3):
        for b in range(3):
            assert topo.distance(a, b) == topo.distance(b, a)
    assert topo.distance(0, 1) < topo.distance(0, 2) < topo.distance(1, 2)
    dram, hbm, cxl = (topo.best_hmat(n) for n in topo.nodes)
    assert hbm.read_bandwidth_mbps >= 4 * dram.read_bandwidth_mbps
    assert hbm.read_latency_ns >= dram.read_latency_ns
    assert cxl.read_latency_ns > hbm.read_latency_ns
    assert {e.initiator for e in topo.hmat} == {0}


# ---- derived views ------------------------------------------------------


@pytest.mark.parametrize(("size", "mib"), [("512M", 512), ("1G", 1024), ("2G", 2048), ("256M", 256), (" 3G ", 3072)])
def test_size_mib(size, mib):
    topo = _model(nodes=[{"id": 0, "kind": "dram", "size": size, "cpus": [0]}])
    assert topo.nodes[0].size_mib == mib


def test_ram_and_cxl_nodes(load_topology):
    topo = load_topology("cxl-type3")
    assert [n.id for n in topo.ram_nodes] == [0]
    assert [n.id for n in topo.cxl_nodes] == [1]
    assert topo.cxl_nodes[0].is_cxl_device and not topo.ram_nodes[0].is_cxl_device
    # A kind "cxl" node backed by plain RAM is a ram node.
    topo = load_topology("dram-cxl")
    assert [n.id for n in topo.ram_nodes] == [0, 1]
    assert topo.cxl_nodes == []
    assert topo.nodes[1].kind == NodeKind.CXL and topo.nodes[1].backing == "ram"


def test_cpus_are_sorted_and_counted():
    topo = _model(nodes=[{"id": 0, "kind": "dram", "size": "1G", "cpus": [2, 0, 1]}])
    assert topo.nodes[0].cpus == [0, 1, 2]
    assert topo.cpu_count == 3


def test_distance_defaults():
    topo = _model(
        nodes=[
            {"id": 0, "kind": "dram", "size": "1G", "cpus": [0]},
            {"id": 1, "kind": "cxl", "size": "1G"},
        ]
    )
    assert topo.distances is None
    assert topo.distance(0, 0) == topo.distance(1, 1) == 10
    assert topo.distance(0, 1) == topo.distance(1, 0) == 20


def test_distance_from_matrix(load_topology):
    topo = load_topology("dram-nvm")
    assert topo.distance(0, 1) == topo.distances[0][1]
    assert topo.distance(1, 1) == 10


def test_initiator_of_cpu_node_is_itself():
    topo = _model(
        nodes=[
            {"id": 0, "kind": "dram", "size": "1G", "cpus": [0]},
            {"id": 1, "kind": "dram", "size": "1G", "cpus": [1]},
        ],
        hmat=[_entry(0, 0, 90), _entry(0, 1, 80), _entry(1, 1, 95)],
    )
    # Node 1 has CPUs: its initiator is itself even though node 0 reads it faster.
    assert topo.initiator_of(topo.nodes[1]) == 1
    assert topo.best_hmat(topo.nodes[1]).read_latency_ns == 95


def test_initiator_of_cpuless_node_follows_hmat_latency():
    topo = _model(
        nodes=[
            {"id": 0, "kind": "dram", "size": "1G", "cpus": [0]},
            {"id": 1, "kind": "dram", "size": "1G", "cpus": [1]},
            {"id": 2, "kind": "nvm", "size": "1G"},
        ],
        distances=[[10, 21, 17], [21, 10, 28], [17, 28, 10]],
        hmat=[_entry(0, 0, 90), _entry(1, 1, 90), _entry(0, 2, 400), _entry(1, 2, 300)],
    )
    # HMAT wins over SLIT: node 1 reads node 2 faster although node 0 is nearer by distance.
    assert topo.initiator_of(topo.nodes[2]) == 1
    best = topo.best_hmat(topo.nodes[2])
    assert (best.initiator, best.target, best.read_latency_ns) == (1, 2, 300)


def test_initiator_of_without_hmat_follows_distance():
    topo = _model(
        nodes=[
            {"id": 0, "kind": "dram", "size": "1G", "cpus": [0]},
            {"id": 1, "kind": "dram", "size": "1G", "cpus": [1]},
            {"id": 2, "kind": "cxl", "size": "1G"},
        ],
        distances=[[10, 21, 30], [21, 10, 20], [30, 20, 10]],
    )
    assert topo.initiator_of(topo.nodes[2]) == 1
    assert topo.best_hmat(topo.nodes[2]) is None


def test_best_hmat_none_for_cxl_device(load_topology):
    topo = load_topology("cxl-type3")
    assert topo.initiator_of(topo.nodes[1]) == 0
    assert topo.best_hmat(topo.nodes[1]) is None


def test_best_hmat_dram_cxl(load_topology):
    topo = load_topology("dram-cxl")
    entry = topo.best_hmat(topo.nodes[1])
    assert (entry.initiator, entry.target, entry.read_latency_ns, entry.read_bandwidth_mbps) == (0, 1, 200, 20000)


def test_model_is_frozen(load_topology):
    topo = load_topology("dram-only")
    with pytest.raises(ValidationError):
        topo.name = "other"


# ---- broken files -------------------------------------------------------


def test_error_is_a_value_error():
    assert issubclass(TopologyError, ValueError)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    _fails(path, "no such topology file")


def test_unknown_node_field(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, extra='colour = "red"\n'))
    _fails(path, "nodes[1].colour", "Extra inputs are not permitted", "'red'")


def test_unknown_top_level_field(write_topology):
    path = write_topology(DESCRIPTION + 'vendor = "acme"\n' + DRAM0)
    _fails(path, "vendor", "Extra inputs are not permitted", "'acme'")


def test_top_level_key_after_nodes_table_lands_in_the_node(write_topology):
    # TOML puts keys after [[nodes]] into that node: the loader must say so, not ignore it.
    path = write_topology(DESCRIPTION + DRAM0 + _node(1) + "distances = [[10, 20], [20, 10]]\n")
    _fails(path, "nodes[1].distances", "Extra inputs are not permitted")


def test_asymmetric_distances(write_topology):
    path = write_topology(DESCRIPTION + "distances = [[10, 20], [21, 10]]\n" + DRAM0 + _node(1))
    _fails(path, "distances[0][1]=20", "distances[1][0]=21", "symmetric")


def test_distance_to_self_must_be_ten(write_topology):
    path = write_topology(DESCRIPTION + "distances = [[10, 20], [20, 12]]\n" + DRAM0 + _node(1))
    _fails(path, "distances[1][1]=12", "to itself is 10")


def test_remote_distance_out_of_range(write_topology):
    path = write_topology(DESCRIPTION + "distances = [[10, 10], [10, 10]]\n" + DRAM0 + _node(1))
    _fails(path, "distances[0][1]=10", "11..254")


def test_distance_matrix_wrong_shape(write_topology):
    path = write_topology(DESCRIPTION + "distances = [[10, 20], [20, 10]]\n" + DRAM0 + _node(1) + _node(2))
    _fails(path, "distances", "3x3")


@pytest.mark.parametrize("field", ["target", "initiator"])
def test_hmat_names_missing_node(write_topology, field):
    bad = _hmat(0, 5) if field == "target" else _hmat(7, 0)
    path = write_topology(DESCRIPTION + DRAM0 + _node(1) + _hmat(0, 0) + _hmat(0, 1) + bad)
    value = 5 if field == "target" else 7
    _fails(path, f"hmat[2].{field}={value}", "no such node", "0..1")


@pytest.mark.parametrize("size", ["1.5G", "512K", "1T", "0M", "big", "-512M", "512"])
def test_bad_size(write_topology, size):
    path = write_topology(DESCRIPTION + DRAM0.replace('size = "1G"', f'size = "{size}"'))
    _fails(path, "nodes[0].size", repr(size), "is not a size")


def test_size_of_wrong_type(write_topology):
    path = write_topology(DESCRIPTION + DRAM0.replace('size = "1G"', "size = 1024"))
    _fails(path, "nodes[0].size", "1024")


def test_cpus_with_gap(write_topology):
    path = write_topology(DESCRIPTION + DRAM0.replace("cpus = [0, 1]", "cpus = [0, 2]"))
    _fails(path, "nodes[].cpus", "0..N-1", "[0, 2]")


def test_cpus_shared_between_nodes(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, cpus=[1, 2]))
    _fails(path, "nodes[].cpus", "exactly once", "[0, 1, 1, 2]")


def test_cpus_repeated_within_node(write_topology):
    path = write_topology(DESCRIPTION + DRAM0.replace("cpus = [0, 1]", "cpus = [0, 0]"))
    _fails(path, "nodes[0].cpus", "distinct", "[0, 0]")


def test_node_zero_without_cpus(write_topology):
    path = write_topology(DESCRIPTION + _node(0) + _node(1, cpus=[0, 1]))
    _fails(path, "nodes[0].cpus is empty", "node 0 must hold CPUs")


def test_node_ids_out_of_order(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(2))
    _fails(path, "nodes[].id", "[0, 2]")


def test_unknown_kind(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, kind="sram"))
    _fails(path, "nodes[1].kind", "'sram'")


def test_unknown_backing(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, backing="pmem"))
    _fails(path, "nodes[1].backing", "'pmem'")


def test_cxl_device_with_cpus(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, kind="cxl", cpus=[2], backing="cxl-type3"))
    _fails(path, "nodes[1].cpus=[2]", "cxl-type3 node has no CPUs")


@pytest.mark.parametrize("size", ["384M", "100M", "1000M"])
def test_cxl_device_size_not_granule_multiple(write_topology, size):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, kind="cxl", size=size, backing="cxl-type3"))
    _fails(path, f"nodes[1].size={size!r}", "multiple of 256M")


def test_cxl_device_sizes_on_granule_load(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, kind="cxl", size="768M", backing="cxl-type3"))
    assert t.load(path).cxl_nodes[0].size_mib == 768


def test_cxl_device_before_ram_node(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, kind="cxl", backing="cxl-type3") + _node(2))
    _fails(path, "nodes[2]", "cxl-type3 nodes must come after all ram-backed nodes")


def test_hmat_initiator_without_cpus(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, kind="nvm") + _hmat(0, 0) + _hmat(1, 1))
    _fails(path, "hmat[1].initiator=1", "an initiator must be a node with CPUs")


def test_hmat_target_is_cxl_device(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1, kind="cxl", backing="cxl-type3") + _hmat(0, 0) + _hmat(0, 1))
    _fails(path, "hmat[1].target=1", "CDAT")


def test_duplicate_hmat_pair(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1) + _hmat(0, 0) + _hmat(0, 1) + _hmat(0, 1, lat=300))
    _fails(path, "hmat[2]", "initiator 0 -> target 1 given twice")


def test_ram_node_without_hmat_entry(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _node(1) + _node(2) + _hmat(0, 0) + _hmat(0, 2))
    _fails(path, "hmat: node 1 has no entry", "every ram-backed node needs one")


def test_hmat_missing_field(write_topology):
    entry = _hmat(0, 0).replace("write_bandwidth_mbps = 30000\n", "")
    path = write_topology(DESCRIPTION + DRAM0 + entry)
    _fails(path, "hmat[0].write_bandwidth_mbps", "Field required")


def test_hmat_non_positive_value(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + _hmat(0, 0, lat=0))
    _fails(path, "hmat[0].read_latency_ns", "greater than 0", "(got 0)")


def test_toml_syntax_error(write_topology):
    path = write_topology(DESCRIPTION + DRAM0 + "[[nodes]\nid = 1\n")
    _fails(path, "not valid TOML")


def test_name_must_match_file_name(write_topology):
    path = write_topology('name = "other"\n' + DESCRIPTION + DRAM0, name="broken")
    _fails(path, "name:", "'other'", "'broken'")


def test_name_defaults_to_file_name(write_topology):
    path = write_topology(DESCRIPTION + DRAM0, name="my-box")
    assert t.load(path).name == "my-box"


def test_bad_file_name_is_reported(write_topology):
    path = write_topology(DESCRIPTION + DRAM0, name="My_Box")
    _fails(path, "name", "'My_Box'")


def test_description_too_short(write_topology):
    path = write_topology('description = "tiny"\n' + DRAM0)
    _fails(path, "description", "'tiny'")


def test_no_nodes(write_topology):
    path = write_topology(DESCRIPTION)
    _fails(path, "nodes", "Field required")


def test_all_errors_are_reported(write_topology):
    text = DESCRIPTION + DRAM0.replace('size = "1G"', 'size = "1.5G"') + _node(1, extra='colour = "red"\n')
    path = write_topology(text)
    message = _fails(path, "nodes[0].size", "nodes[1].colour")
    # One line per error, each naming the file.
    lines = message.splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_minimal_valid_file_loads(write_topology):
    path = write_topology(DESCRIPTION + DRAM0, name="minimal")
    topo = t.load(path)
    assert topo.sources == [] and topo.hmat == [] and topo.distances is None
    assert topo.nodes[0].backing == "ram" and topo.nodes[0].tier is None


def test_dedented_description_is_kept(write_topology):
    text = textwrap.dedent('''\
        description = """
        A machine described over
        several lines of plain text for the model.
        """
    ''') + DRAM0
    topo = t.load(write_topology(text, name="multi"))
    assert "several lines" in topo.description


def test_hybrid_cores_speeds(load_topology):
    topo = load_topology("hybrid-cores")
    assert topo.cpu_speeds() == {0: 1.0, 1: 1.0, 2: 0.4, 3: 0.4}
    assert topo.heterogeneous_cores and topo.fastest_cpus() == [0, 1]
    assert [g.kind for g in topo.cores] == ["performance", "efficiency"]


def test_hybrid_tiered_has_slow_cores_and_slow_memory(load_topology):
    topo = load_topology("hybrid-tiered")
    assert topo.cpu_speeds() == {0: 1.0, 1: 1.0, 2: 0.4, 3: 0.4}
    assert [n.kind for n in topo.nodes] == ["dram", "nvm"] and not topo.cxl_nodes
    nvm = topo.best_hmat(topo.nodes[1])
    assert (nvm.read_latency_ns, nvm.write_latency_ns) == (305, 900)


def test_unlisted_cpus_run_at_full_speed():
    topo = _model(cores=[{"cpus": [1], "kind": "efficiency", "speed": 0.5}])
    assert topo.cpu_speeds() == {0: 1.0, 1: 0.5}
    assert not _model().heterogeneous_cores


@pytest.mark.parametrize(("cores", "message"), [
    ([{"cpus": [5], "kind": "little", "speed": 0.5}], "cores[0].cpus: vCPU 5 does not exist"),
    ([{"cpus": [0], "kind": "big", "speed": 1.0}, {"cpus": [0], "kind": "little", "speed": 0.5}],
     "cores[1].cpus: vCPU 0 is already in cores[0]"),
])
def test_core_groups_must_name_existing_cpus_once(cores, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _model(cores=cores)


def test_a_core_speed_out_of_range_names_file_field_and_value(tmp_path):
    path = tmp_path / "fast.toml"
    path.write_text(DESCRIPTION + DRAM0 + '\n[[cores]]\ncpus = [1]\nkind = "turbo"\nspeed = 1.5\n')
    message = _fails(path, "cores[0].speed", "1.5")
    assert str(path) in message
