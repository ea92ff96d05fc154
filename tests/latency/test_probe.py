"""probe-latency's result: ratios against the fastest node, the largest error, the JSON shape, the CLI."""

from __future__ import annotations

import pytest

from testbed import cli
from testbed.latency.probe import NodeResult, ProbeResult


def _nvm_result(read1: float, write1: float) -> ProbeResult:
    return ProbeResult("dram-nvm", [NodeResult(0, 100, 100, 800.0, 820.0), NodeResult(1, 305, 900, read1, write1)],
                       reference=0)


def test_ratios_are_against_the_reference_node():
    ratios = _nvm_result(2440.0, 7380.0).ratios()
    assert set(ratios) == {1}
    assert ratios[1]["read"] == pytest.approx((3.05, 3.05))
    assert ratios[1]["write"] == pytest.approx((9.0, 9.0))


def test_largest_ratio_error_takes_the_worse_of_reads_and_writes():
    # reads exact, writes 10 % short of 9x
    assert _nvm_result(2440.0, 0.9 * 7380.0).ratio_error_max == pytest.approx(0.10)
    assert _nvm_result(1.2 * 2440.0, 7380.0).ratio_error_max == pytest.approx(0.20)


def test_json_has_exactly_the_documented_shape():
    data = _nvm_result(2440.0, 7380.0).to_json()
    assert set(data) == {"topology", "nodes", "ratio_error_max"}
    assert data["nodes"][1] == {"node": 1, "target_read_ns": 305, "target_write_ns": 900,
                                "measured_read_ns": 2440.0, "measured_write_ns": 7380.0}
    assert data["ratio_error_max"] == 0.0


def test_probe_latency_is_a_testbed_subcommand():
    args = cli.parser().parse_args(["probe-latency", "dram-cxl", "--json", "--repeats", "5"])
    assert (args.topology, args.json, args.repeats, args.recalibrate) == ("dram-cxl", True, 5, False)
    assert args.func.__module__ == "testbed.latency.probe"


def test_unknown_topology_fails_before_any_boot(capsys):
    assert cli.main(["probe-latency", "no-such-machine"]) == 2
    assert "no-such-machine.toml: no such topology file" in capsys.readouterr().err
