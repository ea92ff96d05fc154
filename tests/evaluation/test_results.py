"""Results files: runs survive a JSON and a CSV round trip unchanged; counters come from the plugin's shape."""

from __future__ import annotations

import csv
import io
import json

import pytest

from testbed.evaluation import results
from testbed.evaluation.results import NodeCounters, Run
from testbed.evaluation.series import Series
from testbed.latency.control import COUNTER_FIELDS, Counters

from .conftest import make_run

PLUGIN_ANSWER = json.dumps({
    "nodes": [
        {"node": -1, "accesses": 5, "reads": 5, "writes": 0, "misses": 1, "read_misses": 1, "write_misses": 0,
         "streamed": 0, "delay_ns": 0},
        {"node": 0, "accesses": 900, "reads": 600, "writes": 300, "misses": 300, "read_misses": 200,
         "write_misses": 100, "streamed": 40, "delay_ns": 150000},
        {"node": 1, "accesses": 300, "reads": 200, "writes": 100, "misses": 100, "read_misses": 60,
         "write_misses": 40, "streamed": 0, "delay_ns": 90000},
    ],
    "vcpus": [{"vcpu": 0, "accesses": 1205, "reads": 805, "writes": 400, "misses": 401, "read_misses": 261,
               "write_misses": 140, "streamed": 40, "delay_ns": 240000}],
    "ran_ns": [{"vcpu": 0, "ns": 3_000_000_000}, {"vcpu": 1, "ns": 1_000_000_000}],
    "slept_ns": 240000, "sleeps": 12,
})


def sample_runs() -> list[Run]:
    ok = make_run(misses={0: 300, 1: 100}, hints_applied=3, hints_rejected=1,
                  durations={"workload": 12.5, "advise": 0.25}, started_at="2026-11-25T11:00:00+00:00")
    ok.set_counters(Counters.parse(PLUGIN_ANSWER), "loop")
    odd = make_run(policy="llm", repeat=1, value=123.456789012345, misses={0: 1, 1: 2, 2: 3}, hints_rejected=3,
                   advice_error='no valid answer: "to_nodes", duplicates\nafter repair: the same',
                   rejections=["advisor: no usable answer", 'agent: migrate_pages rejected: pid 1, "init"',
                               "advisor: set_knob dropped: value 9,\nnot one the kernel takes"])
    failed = make_run(policy="oracle", value=None, ok=False, error='boot failed: "x", y\nsecond line')
    timed = make_run(policy="kernel-tiering", repeat=2, misses={0: 5, 1: 9},
                     series=Series(tick_s=0.25, warmup_s=1.0, ops=[(0.25, 10), (1.5, 90)],
                                   misses=[(0.25, {0: 1, 1: 3, -1: 0}), (1.5, {0: 5, 1: 9, -1: 2})]),
                     vmstat={"numa_hint_faults": 5000, "pgpromote_success": 700},
                     touch_vmstat={"pgsteal_kswapd": 2600, "pgpromote_success": 0},
                     kthread_cpu_s={"kdamond": 0.0, "kswapd": 0.71},
                     hopeless_nodes={"start": [], "end": [0]}, fast_free_mib=126,
                     huge_mib={0: 290, 1: 0})
    enforced = make_run(policy="rules:write-aware", misses={0: 7, 1: 2},
                        enforcer={"rounds": 4.0, "moved_mib": 410.5, "no_room_mib": 0.0, "cpu_s": 6.2,
                                  "cpu_percent": 17.5})
    interrupted = make_run(policy="damon", value=None, ok=False, interrupted=True, error="interrupted: KeyboardInterrupt")
    return [ok, odd, failed, timed, enforced, interrupted]


def test_node_counters_mirror_the_plugin_fields():
    assert tuple(NodeCounters.model_fields) == COUNTER_FIELDS


def test_counters_from_a_plugin_snapshot():
    run = make_run()
    run.set_counters(Counters.parse(PLUGIN_ANSWER), "gate-to-exit")
    assert run.counters[0].misses == 300 and run.counters[-1].accesses == 5 and run.counters_window == "gate-to-exit"
    assert run.slept_ns == 240000
    assert run.vcpu_ran_s == {0: 3.0, 1: 1.0} and run.others_share() == 0.25
    assert make_run().others_share() is None  # recorded nothing
    # outside-range traffic (-1) is not a node's share
    assert run.node_share() == {0: 0.75, 1: 0.25}
    assert run.node_share("accesses") == {0: 0.75, 1: 0.25}
    assert make_run().node_share() == {}


def test_value_is_the_primary_figure_of_a_good_run():
    assert make_run(value=42.0).value == 42.0
    assert make_run(value=42.0, ok=False).value is None
    assert make_run(value=None).value is None


def test_json_round_trip(tmp_path):
    runs = sample_runs()
    results.write(tmp_path / "out", runs)
    assert results.read(tmp_path / "out") == runs
    assert results.read(tmp_path / "out" / "results.json") == runs
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["schema_version"] == results.SCHEMA_VERSION
    assert document["runs"][0]["counters"]["-1"]["accesses"] == 5  # JSON keys are strings


def test_csv_round_trip(tmp_path):
    runs = sample_runs()
    results.write(tmp_path, runs)
    assert results.read(tmp_path / "results.csv") == runs
    rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert len(rows) == 6
    assert rows[3]["vmstat.pgpromote_success"] == "700" and rows[3]["kthread_cpu_s.kswapd"] == "0.71"
    assert rows[3]["touch_vmstat.pgsteal_kswapd"] == "2600" and rows[0]["touch_vmstat.pgsteal_kswapd"] == ""
    assert json.loads(rows[3]["series"])["ops"] == [[0.25, 10], [1.5, 90]] and rows[0]["series"] == ""
    assert rows[5]["interrupted"] == "True" and rows[0]["interrupted"] == "False"
    assert rows[4]["enforcer.moved_mib"] == "410.5" and rows[0]["enforcer.moved_mib"] == ""
    assert rows[0]["counters.0.misses"] == "300" and rows[0]["figure.ops_per_s"] == "100.0"
    assert rows[0]["vcpu_ran_s.1"] == "1.0" and rows[1]["vcpu_ran_s.1"] == ""
    assert rows[1]["counters.2.misses"] == "3" and rows[0]["counters.2.misses"] == ""
    assert rows[2]["ok"] == "False" and rows[2]["error"].endswith("second line")
    assert rows[1]["rejection.1"] == 'agent: migrate_pages rejected: pid 1, "init"' and rows[0]["rejection.0"] == ""


def test_files_are_rewritten_whole(tmp_path):
    runs = sample_runs()
    results.write(tmp_path, runs[:1])
    results.write(tmp_path, runs)
    assert len(results.read(tmp_path)) == len(runs)
    assert not list(tmp_path.glob(".*tmp"))


def test_version_1_results_still_read(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 1, "runs": [
        {"topology": "dram-nvm", "workload": "skewed-read", "policy": "default", "repeat": 0, "seed": 1}]}))
    run, = results.read(tmp_path)
    assert run.series is None and run.vmstat == {} and not run.interrupted


def test_other_schema_versions_are_refused(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 99, "runs": []}))
    with pytest.raises(ValueError, match="schema_version 99"):
        results.read(tmp_path)


def test_json_schema_describes_runs():
    schema = results.json_schema()
    assert "runs" in schema["properties"]
    assert "counters" in schema["$defs"]["Run"]["properties"]
