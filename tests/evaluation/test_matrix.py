"""Matrix files: the shipped ones load and expand; mistakes are refused naming file, field and value."""

from __future__ import annotations

import json

import pytest

from testbed.evaluation import matrix
from testbed.evaluation.datafile import DataFileError

GOOD = """
topologies = ["dram-cxl", "dram-nvm"]
workloads = ["skewed-read", { name = "skewed-write", params = { size_mib = 64 } }]
policies = ["default", "oracle", "llm"]
repeats = 2
seed = 10
"""


def test_shipped_matrices_load_and_expand():
    default = matrix.load(matrix.resolve("default"))
    runs = default.runs()
    assert len(runs) == len(default.topologies) * len(default.workloads) * len(default.policies) * default.repeats
    # every built-in policy but llm-policy (its local-model policy is judged on the hot-table matrix) and
    # the oracle's halves (judged on mixed-tiered-halves, whose workload names roles)
    assert set(default.policies) == set(matrix.POLICIES) - {"llm-policy", "oracle-cores", "oracle-memory"}
    redis = matrix.load(matrix.resolve("redis"))
    assert [w.name for w in redis.workloads] == ["redis"] and "oracle" not in redis.policies
    tiny = matrix.load(matrix.resolve("tiny"))
    assert {r.policy for r in tiny.runs()} == {"default", "oracle"}


def test_runs_are_topology_major_with_policies_paired_on_a_seed(write_file):
    m = matrix.load(write_file("mine.toml", GOOD))
    runs = m.runs()
    assert len(runs) == 2 * 2 * 3 * 2
    # one boot per topology: all runs of a topology are contiguous
    topos = [r.topology for r in runs]
    assert topos == sorted(topos, key=["dram-cxl", "dram-nvm"].index)
    # each (topology, repeat, workload) holds every policy once, on one seed = seed + repeat
    cell = [r for r in runs if (r.topology, r.repeat, r.workload) == ("dram-nvm", 1, "skewed-write")]
    assert [r.policy for r in cell] == ["default", "oracle", "llm"]
    assert {r.seed for r in cell} == {11}
    assert m.params_of("skewed-write") == {"size_mib": 64}
    assert m.params_of("skewed-read") == {}
    assert m.name == "mine" and "dram-nvm" in m.text


def test_explicit_seeds(write_file):
    m = matrix.load(write_file("s.toml", GOOD + "seeds = [5, 99]\n"))
    assert sorted({(r.repeat, r.seed) for r in m.runs()}) == [(0, 5), (1, 99)]


@pytest.mark.parametrize("change, field, value", [
    ('policies = ["default", "magic"]', "policies[1]", "magic"),
    ('policies = ["default", "rules:../etc/passwd"]', "policies[1]", "rules:../etc/passwd"),
    ('policies = ["default", "default"]', "policies", "default"),
    ("repeats = 0", "repeats", "0"),
    ('latency = "felt"', "latency", "felt"),
    ("seeds = [1, 2, 3]", "seeds", "[1, 2, 3]"),
    ("bogus = 1", "bogus", "1"),
    ("llm = { every_s = -5 }", "llm.every_s", "-5"),
    ("fast_node_free_mib = 0", "fast_node_free_mib", "0"),
    ("tlb_reach_ms = -1", "tlb_reach_ms", "-1"),
])
def test_schema_errors_name_file_field_and_value(write_file, change, field, value):
    key = change.split("=")[0].strip()
    text = "\n".join(line for line in GOOD.splitlines() if not line.startswith(key + " ")) + "\n" + change + "\n"
    path = write_file("bad.toml", text)
    with pytest.raises(DataFileError) as err:
        matrix.load(path)
    message = str(err.value)
    assert str(path) in message and field in message and value in message, message


@pytest.mark.parametrize("change, expected", [
    ('topologies = ["dram-cxl", "no-such-machine"]', ["topologies[1]", "no-such-machine", "no such topology"]),
    ('workloads = ["skewed-read", "nope"]', ["workloads[1]", "'nope'", "no such workload"]),
    ('workloads = [{ name = "skewed-read", params = { sise_mib = 1 } }]',
     ["workloads[0].params.sise_mib", "no such parameter", "size_mib"]),
    ('topologies = ["cxl-type3"]', ["topologies[0]", "cxl-type3", "no HMAT latencies"]),
    ('workloads = ["skewed-read", "redis"]', ["workloads[1]", "'redis'", "no hot map", "'oracle'"]),
    ('policies = ["default", "oracle-cores"]', ["workloads[0]", "'skewed-read'", "no roles", "'oracle-cores'"]),
])
def test_names_are_checked_against_the_files(write_file, change, expected):
    key = change.split("=")[0].strip()
    text = "\n".join(line for line in GOOD.splitlines() if not line.startswith(key + " ")) + "\n" + change + "\n"
    path = write_file("names.toml", text)
    with pytest.raises(DataFileError) as err:
        matrix.load(path)
    for part in [str(path), *expected]:
        assert part in str(err.value), err.value


def test_rules_policies_name_a_shipped_file_whose_nodes_every_topology_has(write_file, monkeypatch, tmp_path):
    shipped = matrix.load(matrix.resolve("write-aware"))
    assert shipped.rules() == ["heat-only", "write-aware"]
    assert all(matrix.rules_file(n).is_file() for n in shipped.rules())
    missing = write_file("r1.toml", GOOD.replace('"default", "oracle", "llm"', '"default", "rules:nope"'))
    with pytest.raises(DataFileError, match=r"policies\[1\]: 'rules:nope': .*nope.json: no such policy file"):
        matrix.load(missing)
    monkeypatch.setattr(matrix, "RULES_DIR", tmp_path)
    (tmp_path / "third-node.json").write_text(json.dumps({
        "schema": "placement-policy-v1", "limits": {"bandwidth_mib_s": 8, "interval_s": 2},
        "rules": [{"match": {"heat": "cold"}, "nodes": [2]}]}))
    three = write_file("r2.toml", GOOD.replace('"default", "oracle", "llm"', '"default", "rules:third-node"'))
    with pytest.raises(DataFileError) as err:
        matrix.load(three)  # dram-cxl has nodes 0 and 1 only
    assert "topologies[0]: 'dram-cxl' cannot run 'rules:third-node'" in str(err.value)
    assert "names node(s) [2] that the machine lacks" in str(err.value)


def test_advertised_mode_accepts_a_machine_without_hmat(write_file):
    m = matrix.load(write_file("adv.toml", GOOD.replace('"dram-cxl", "dram-nvm"', '"cxl-type3"')
                               + 'latency = "advertised"\n'))
    assert m.latency == "advertised" and m.topologies == ["cxl-type3"]


def test_file_level_errors(write_file, tmp_path):
    with pytest.raises(DataFileError, match="no such matrix file"):
        matrix.load(tmp_path / "absent.toml")
    with pytest.raises(DataFileError, match="not valid TOML"):
        matrix.load(write_file("broken.toml", "topologies = [\n"))
    with pytest.raises(DataFileError, match="name: 'other' must match the file name 'named'"):
        matrix.load(write_file("named.toml", GOOD + 'name = "other"\n'))


def test_from_text_keeps_the_text_for_reruns():
    m = matrix.from_text(GOOD, "manifest.json", name="replayed")
    assert m.name == "replayed" and m.text == GOOD and m.origin == "manifest.json"


def test_a_time_based_matrix_runs_warm_up_and_steady_state_in_one_timed_phase(write_file):
    m = matrix.load(write_file("t.toml", GOOD + "duration_s = 20\nwarmup_s = 40\ntime_scale = 'auto'\n"))
    assert m.timed_s == 60 and m.tick_ms == 250 and m.time_scale == "auto"
    assert matrix.load(write_file("c.toml", GOOD)).timed_s is None  # counted runs, time_scale 1, as before
    assert matrix.load(write_file("c2.toml", GOOD)).time_scale == 1
    tiering = matrix.load(matrix.resolve("tiering"))
    unscaled = matrix.load(matrix.resolve("tiering-unscaled"))
    assert tiering.time_scale == "auto" and unscaled.time_scale == 1
    assert tiering.phase_clock == "model" and unscaled.phase_clock == "host"
    clocks = {"name", "description", "time_scale", "phase_clock", "warmup_s", "duration_s", "tlb_reach_ms"}
    assert tiering.model_dump(exclude=clocks) == unscaled.model_dump(exclude=clocks)  # the only differences
    one_thread = matrix.load(matrix.resolve("tiering-1t"))
    assert tiering.tcg_threads == "multi" and one_thread.tcg_threads == "single"
    threads = {"name", "description", "tcg_threads"}
    assert tiering.model_dump(exclude=threads) == one_thread.model_dump(exclude=threads)


def test_shipped_emulated_matrices_run_a_tcg_thread_per_vcpu_but_the_one_thread_twins_and_smoke_tests():
    single = set()
    for name in matrix.available():
        m = matrix.load(matrix.resolve(name))
        if m.latency == "emulated" and m.tcg_threads == "single":
            single.add(name)
    # The twins measure what one thread costs; the smoke tests' bounds were measured on one thread.
    assert single == {"tiering-1t", "tiering-hotcold-1t", "write-aware-1t", "tiny", "tiny-timed",
                      "tiny-write-aware"}, single
    mixed = matrix.load(matrix.resolve("mixed-tiered"))
    assert (mixed.topologies, mixed.latency, mixed.tcg_threads) == (["hybrid-tiered"], "emulated", "multi")
    halves = matrix.load(matrix.resolve("mixed-tiered-halves"))  # mixed-tiered but for its policies and repeats
    assert halves.policies == ["default", "oracle-cores", "oracle-memory", "oracle"]
    ablation = {"name", "description", "policies", "repeats"}
    assert halves.model_dump(exclude=ablation) == mixed.model_dump(exclude=ablation)


def test_phases_in_the_modelled_machines_seconds_last_k_times_longer_on_the_host(write_file):
    model = matrix.load(write_file("m.toml", GOOD + "duration_s = 2\nwarmup_s = 5\nphase_clock = 'model'\n"))
    assert model.host_phases(13.0) == (65.0, 91.0)
    assert model.host_phases(1.0) == (5.0, 7.0)
    host = matrix.load(write_file("h.toml", GOOD + "duration_s = 2\nwarmup_s = 5\n"))
    assert host.phase_clock == "host" and host.host_phases(13.0) == (5.0, 7.0)
    assert matrix.load(write_file("c.toml", GOOD)).host_phases(13.0) is None


@pytest.mark.parametrize("change, expected", [
    ("warmup_s = 5", ["warmup_s=5", "duration_s"]),
    ("time_scale = 0", ["time_scale=0"]),
    ("time_scale = 'fast'", ["time_scale", "fast"]),
    ("duration_s = -1", ["duration_s", "-1"]),
    ("tick_ms = 1", ["tick_ms", "1"]),
    ("tcg_threads = 'many'", ["tcg_threads", "many"]),
    ("phase_clock = 'model'", ["phase_clock", "duration_s"]),
    ("phase_clock = 'guest'\nduration_s = 1", ["phase_clock", "guest"]),
    ("min_k = -1", ["min_k", "-1"]),
    ("min_k = 20\nlatency = 'advertised'", ["min_k=20", "emulated"]),
])
def test_time_based_fields_are_checked(write_file, change, expected):
    path = write_file("bad-time.toml", GOOD + change + "\n")
    with pytest.raises(DataFileError) as err:
        matrix.load(path)
    for part in [str(path), *expected]:
        assert part in str(err.value), err.value


def test_a_workload_that_cannot_run_for_a_time_is_named(write_file):
    path = write_file("r.toml", 'topologies = ["dram-nvm"]\nworkloads = ["redis"]\npolicies = ["default"]\n'
                                "duration_s = 10\n")
    with pytest.raises(DataFileError, match=r"workloads\[0\]: 'redis' cannot run for a time.*duration_s=10"):
        matrix.load(path)
