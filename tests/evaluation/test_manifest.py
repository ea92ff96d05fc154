"""Manifests: collected facts, a lossless round trip, a re-run matrix from the stored text, drift found."""

from __future__ import annotations

import json

import pytest

from testbed import topology
from testbed.evaluation import manifest, matrix


@pytest.fixture
def collected():
    m = matrix.load(matrix.resolve("tiny"))
    return m, manifest.collect(m, None, ["testbed", "eval", "tiny.toml"])


def test_collect_records_the_machine_files_and_seeds(collected):
    m, man = collected
    assert man.matrix.name == "tiny" and man.matrix.text == m.text
    assert man.topologies == {"dram-cxl": topology.digest(topology.resolve("dram-cxl"))}
    assert set(man.workloads) == {"skewed-read"} and len(man.workloads["skewed-read"]) == 64
    assert man.seeds == [1, 2]
    assert man.qemu_version.count(".") == 2
    assert len(man.testbed_commit) == 40
    assert man.host["cpus"] >= 1 and man.host["memory_mib"] > 0


def test_round_trip_and_rerun(tmp_path, collected):
    m, man = collected
    man.plugin = {"dram-cxl": {"delays": {"0": [500, 500]}, "calibration": {"slope_read": 1.1}}}
    man.llm = [manifest.LlmExchange(topology="dram-cxl", workload="skewed-read", repeat=0, model="m",
                                    prompt_digest="p" * 64, answer_digest="a" * 64)]
    path = manifest.write(tmp_path, man)
    assert path == tmp_path / "manifest.json"
    back = manifest.read(path)
    assert back == man
    rerun = manifest.rerun_matrix(back, path)
    assert rerun.runs() == m.runs() and rerun.name == "tiny"


def test_rerun_uses_the_stored_text_not_the_file(tmp_path, collected):
    _, man = collected
    man.matrix.text = man.matrix.text.replace("repeats = 2", "repeats = 1")
    assert len(manifest.rerun_matrix(man, tmp_path / "manifest.json").runs()) == 2


def test_drift_names_what_changed(collected):
    _, man = collected
    assert manifest.drift(man, man) == []
    now = man.model_copy(deep=True)
    now.qemu_version = "11.0.0"
    now.topologies["dram-cxl"] = "0" * 64
    found = manifest.drift(man, now)
    assert any(d.startswith("qemu_version:") and "11.0.0" in d for d in found)
    assert "topologies.dram-cxl: the file changed since the recorded run" in found


def test_read_errors_name_the_file_and_field(tmp_path, collected):
    _, man = collected
    with pytest.raises(manifest.ManifestError, match="no such manifest"):
        manifest.read(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(manifest.ManifestError, match="bad.json: not valid JSON"):
        manifest.read(bad)
    data = json.loads(man.model_dump_json())
    data["seeds"] = "one"
    bad.write_text(json.dumps(data))
    with pytest.raises(manifest.ManifestError, match=r"bad.json: seeds: .*\(got 'one'\)"):
        manifest.read(bad)
