"""Latency per initiator: two-socket's remote figures become targets, delays and plugin arguments under MTTCG
only, and probe-latency reports each socket's ratios; machines with one initiator are untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.latency import calibrate, trim
from testbed.latency.calibrate import Calibration
from testbed.latency.emulated import (
    CacheModel,
    InitiatorError,
    delay_arg,
    initiator_args,
    key_text,
    parse_key,
    plugin_option,
    probe_cpus,
)
from testbed.latency.probe import InitiatorsResult, NodeResult, ProbeResult

CAL = Calibration(base_read_ns=310, base_write_ns=340, slope_read=1.07, slope_write=1.05, key="k")
TWO_SOCKET = {(0, 0): (90, 90), (0, 1): (140, 140), (1, 0): (140, 140), (1, 1): (90, 90)}


def test_two_sockets_differ_by_initiator_and_one_initiator_machines_do_not(load_topology):
    assert load_topology("two-socket").initiators_differ
    for name in ("dram-nvm", "dram-cxl", "hbm-dram-cxl", "hybrid-tiered", "dram-only"):
        assert not load_topology(name).initiators_differ, name


def test_every_initiator_sees_each_node_at_the_files_figures(load_topology):
    topo = load_topology("two-socket")
    assert calibrate.initiator_targets(topo) == TWO_SOCKET
    assert calibrate.targets(topo) == {0: (90, 90), 1: (90, 90)}  # per node, nearest initiator: as before


def test_a_pair_the_file_leaves_out_is_felt_at_the_nearest_initiators_figures(load_topology):
    from testbed.topology import Topology

    data = load_topology("two-socket").model_dump()
    # no entry for node 1 from socket 0, and socket 1's reads of node 0 slower than its writes
    data["hmat"] = [{**e, "read_latency_ns": 150} if (e["initiator"], e["target"]) == (1, 0) else e
                    for e in data["hmat"] if (e["initiator"], e["target"]) != (0, 1)]
    gappy = Topology.model_validate(data)
    assert gappy.initiators_differ
    targets = calibrate.initiator_targets(gappy)
    assert targets[(0, 1)] == (90, 90)  # node 1's nearest initiator's (socket 1)
    assert targets[(1, 0)] == (150, 140)


def test_one_k_for_every_initiator_set_by_the_fastest_local_figure():
    assert CAL.scale(TWO_SOCKET) == pytest.approx(CAL.scale({0: (90, 90), 1: (90, 90)}))


def test_delays_per_initiator_give_each_sockets_remote_over_local_ratio():
    delays = CAL.delays(TWO_SOCKET)
    felt = {k: (CAL.base_read_ns + CAL.slope_read * r, CAL.base_write_ns + CAL.slope_write * w)
            for k, (r, w) in delays.items()}
    for local, remote in (((0, 0), (0, 1)), ((1, 1), (1, 0))):
        assert delays[remote][0] > delays[local][0]
        assert felt[remote][0] / felt[local][0] == pytest.approx(140 / 90, rel=5e-3)
        assert felt[remote][1] / felt[local][1] == pytest.approx(140 / 90, rel=5e-3)


class Machine:
    def __init__(self, topology, per_initiator):
        self.topology, self.per_initiator = topology, per_initiator


def test_machine_targets_are_per_initiator_only_where_the_machine_feels_them(load_topology):
    assert calibrate.machine_targets(Machine(load_topology("two-socket"), True)) == TWO_SOCKET
    assert calibrate.machine_targets(Machine(load_topology("two-socket"), False)) == {0: (90, 90), 1: (90, 90)}


def test_plugin_arguments_give_each_vcpu_its_socket_and_each_socket_its_delays(load_topology):
    topo = load_topology("two-socket")
    delays = {(0, 0): (500, 510), (0, 1): (900, 910), (1, 0): (905, 915), (1, 1): (505, 515)}
    args = plugin_option(Path("/p.so"), Path("/s"), topo, delays, CacheModel(), mttcg=True,
                         initiators=True).split(",")
    assert [a for a in args if a.startswith("initiator=")] == ["initiator=2:1", "initiator=3:1"]
    assert [a for a in args if a.startswith("delay=")] == ["delay=0:500:510@0", "delay=1:900:910@0",
                                                          "delay=0:905:915@1", "delay=1:505:515@1"]
    assert "threads=multi" in args


def test_node_delays_come_before_one_initiators_so_they_do_not_overwrite_them(load_topology):
    args = plugin_option(Path("/p.so"), Path("/s"), load_topology("two-socket"), {(1, 0): (9, 9), 0: (1, 1)},
                         CacheModel(), mttcg=True, initiators=True).split(",")
    assert [a for a in args if a.startswith("delay=")] == ["delay=0:1:1", "delay=0:9:9@1"]


@pytest.mark.parametrize("delays, initiators", [({(0, 1): (900, 900)}, False), ({1: (900, 900)}, True)])
def test_per_initiator_arguments_under_one_tcg_thread_are_refused(load_topology, delays, initiators):
    with pytest.raises(InitiatorError, match="two-socket: delays per initiator need a TCG thread per vCPU"):
        plugin_option(Path("/p.so"), Path("/s"), load_topology("two-socket"), delays, CacheModel(),
                      initiators=initiators)


def test_one_initiator_machines_get_exactly_the_arguments_they_had(load_topology):
    args = plugin_option(Path("/p.so"), Path("/s"), load_topology("dram-nvm"), {1: (900, 6000), 0: (500, 510)},
                         CacheModel(), mttcg=True).split(",")
    assert not any(a.startswith("initiator=") for a in args)
    assert [a for a in args if a.startswith("delay=")] == ["delay=0:500:510", "delay=1:900:6000"]
    assert initiator_args(load_topology("dram-nvm")) == []


def test_delay_keys_read_back_as_written():
    assert [key_text(k) for k in (1, (0, 1))] == ["1", "1@0"]
    assert [parse_key(t) for t in ("1", "1@0", "0@1")] == [1, (0, 1), (1, 0)]
    assert delay_arg((1, 0), 140, 150) == "delay=0:140:150@1"


def test_probes_run_on_the_initiators_cpus(load_topology):
    topo = load_topology("two-socket")
    assert (probe_cpus(topo, 0), probe_cpus(topo, 1), probe_cpus(topo)) == ([0, 1], [2, 3], [0, 1])
    with pytest.raises(InitiatorError, match="initiator 2 is not a node with CPUs"):
        probe_cpus(topo, 2)
    with pytest.raises(InitiatorError, match="initiator 1 is not a node with CPUs"):
        probe_cpus(load_topology("dram-nvm"), 1)


def test_a_per_initiator_trim_survives_its_json_and_is_cached_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAS_CACHE", str(tmp_path))
    t = trim.Trim(CAL.delays(TWO_SOCKET), {k: (1000.0, 1100.5) for k in TWO_SOCKET}, 0.02, 2)
    doc = json.loads(json.dumps(t.to_json()))
    assert set(doc["delays_ns"]) == {"0@0", "1@0", "0@1", "1@1"}
    assert trim.Trim.from_json(doc) == t
    assert trim._path(CAL, TWO_SOCKET) != trim._path(CAL, {0: (90, 90), 1: (90, 90)})


def test_the_trim_corrects_each_initiators_view_apart():
    delays = CAL.delays(TWO_SOCKET)
    want = trim.wanted(CAL, TWO_SOCKET)
    felt = {**want, (1, 0): (want[(1, 0)][0] * 0.8, want[(1, 0)][1])}  # socket 1 feels node 0 20 % fast
    assert trim.error(CAL, TWO_SOCKET, felt) == pytest.approx(0.2)
    corrected = trim.correct(CAL, TWO_SOCKET, delays, felt)
    assert corrected[(1, 0)][0] > delays[(1, 0)][0]
    assert {k: d for k, d in corrected.items() if k != (1, 0)} == {k: d for k, d in delays.items() if k != (1, 0)}


def _socket(initiator: int, local: float, remote: float) -> ProbeResult:
    other = 1 - initiator
    nodes = sorted([NodeResult(initiator, 90, 90, local, local), NodeResult(other, 140, 140, remote, remote)],
                   key=lambda n: n.node)
    return ProbeResult("two-socket", nodes, reference=initiator)


def test_each_sockets_ratio_is_against_its_local_node_and_the_worst_counts():
    result = InitiatorsResult("two-socket", {0: _socket(0, 900.0, 1400.0), 1: _socket(1, 1000.0, 1400.0)},
                              {0: [0, 1], 1: [2, 3]})
    assert result.initiators[0].ratios()[1]["read"] == pytest.approx((140 / 90, 1400 / 900))
    assert result.initiators[1].ratios()[0]["read"] == pytest.approx((140 / 90, 1.4))
    assert result.ratio_error_max == pytest.approx(1 - 1.4 / (140 / 90))  # socket 1's, 10 % short


def test_per_initiator_json_has_the_documented_shape():
    data = InitiatorsResult("two-socket", {0: _socket(0, 900.0, 1400.0), 1: _socket(1, 900.0, 1400.0)},
                            {0: [0, 1], 1: [2, 3]}).to_json()
    assert set(data) == {"topology", "initiators", "ratio_error_max"}
    first = data["initiators"][0]
    assert set(first) == {"initiator", "cpus", "reference", "nodes", "ratios", "ratio_error_max"}
    assert (first["initiator"], first["cpus"], first["reference"]) == (0, [0, 1], 0)
    assert first["nodes"][1] == {"node": 1, "target_read_ns": 140, "target_write_ns": 140,
                                 "measured_read_ns": 1400.0, "measured_write_ns": 1400.0}
    assert first["ratios"] == [{"node": 1, "read": [1.5556, 1.5556], "write": [1.5556, 1.5556]}]
    assert data["initiators"][1]["ratios"][0]["node"] == 0
    assert data["ratio_error_max"] == 0.0


def test_the_table_names_the_initiator_of_every_row(capsys):
    from rich.console import Console

    from testbed.latency import probe

    result = InitiatorsResult("two-socket", {0: _socket(0, 900.0, 1400.0), 1: _socket(1, 900.0, 1260.0)},
                              {0: [0, 1], 1: [2, 3]})
    probe._print(result, 10.0, CAL, trim.Trim({}, {}, 0.02, 1), False, Console(stderr=True))
    out = capsys.readouterr().out
    assert out.count("node 0") == 2 and out.count("node 1") == 2  # two rows from each socket
    assert "1.56 (1.56)" in out and "1.40 (1.56)" in out
    assert "largest ratio error: 10.0 %" in out
