"""`testbed eval` end to end on the tiny matrix (dram-cxl, default vs oracle, two repeats), as a real command.

Then `--rerun` of its manifest, interrupted by a terminal's Ctrl-C (SIGINT to
the whole process group) once a run is written: the finished runs and every
other file must be there, and no QEMU it started may be left.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.evaluation import manifest, matrix, results

pytestmark = pytest.mark.vm

TESTBED = [sys.executable, "-m", "testbed.cli"]
FILES = {"results.json", "results.csv", "summary.txt", "summary.csv", "throughput.png", "node-share.png",
         "manifest.json"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(run_eval):
    return run_eval("tiny", timeout=900)


def test_every_file_is_written_and_every_run_is_there(tiny):
    out, stdout = tiny
    assert FILES <= {p.name for p in out.iterdir()}
    m = matrix.load(matrix.resolve("tiny"))
    runs = results.read(out)
    assert [(r.topology, r.repeat, r.workload, r.policy, r.seed) for r in runs] == \
           [(k.topology, k.repeat, k.workload, k.policy, k.seed) for k in m.runs()]
    assert all(r.ok for r in runs), [r.error for r in runs if not r.ok]
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(runs)
    for png in ("throughput.png", "node-share.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert "tiny: 4 runs" in stdout and "oracle" in stdout


def test_runs_carry_figures_counters_hints_and_durations(tiny):
    runs = results.read(tiny[0])
    for run in runs:
        assert run.figures["ops_per_s"] > 0 and run.figures["ops"] == 100000
        assert set(run.counters) >= {0, 1} and sum(c.misses for c in run.counters.values()) > 0
        assert run.slept_ns > 0  # emulated latency was on during the timed phase
        assert run.counters_window == "loop"  # the skewed kernel marks its loop for the plugin
        assert set(run.durations) == {"setup", "policy", "timed", "reset"}
    oracle = [r for r in runs if r.policy == "oracle"]
    assert all(r.hints_applied >= 2 and r.hints_rejected == 0 for r in oracle)
    assert all(r.hints_applied == 0 for r in runs if r.policy == "default")


def test_summary_ratios_come_from_the_figures(tiny):
    runs = results.read(tiny[0])
    median = {p: statistics.median(r.value for r in runs if r.policy == p) for p in ("default", "oracle")}
    with open(tiny[0] / "summary.csv") as f:
        rows = {r["policy"]: r for r in csv.DictReader(f)}
    assert float(rows["default"]["ratio"]) == pytest.approx(1.0)
    assert float(rows["oracle"]["ratio"]) == pytest.approx(median["oracle"] / median["default"])
    assert float(rows["oracle"]["median"]) == pytest.approx(median["oracle"])
    assert rows["oracle"]["clear"] in ("above", "below", "overlap")
    assert f"{median['oracle'] / median['default']:.3f}" in (tiny[0] / "summary.txt").read_text()


def test_manifest_records_the_matrix_machine_and_calibration(tiny):
    man = manifest.read(tiny[0] / "manifest.json")
    assert man.matrix.name == "tiny" and man.matrix.text == matrix.resolve("tiny").read_text()
    assert man.seeds == [1, 2] and set(man.topologies) == {"dram-cxl"}
    assert man.kernel_version.startswith("6.") and len(man.image_digest) >= 16
    plugin = man.plugin["dram-cxl"]
    assert plugin["calibration"]["slope_read"] > 0 and set(plugin["delays_ns"]) == {"0", "1"}
    assert plugin["trim"]["delays_ns"] == plugin["delays_ns"] and set(plugin["trim"]["felt_ns"]) == {"0", "1"}
    assert plugin["fast_node_held_mib"] > 0
    assert plugin["tcg_threads"] == "single"  # the default
    assert plugin["baseline_knobs"]["/proc/sys/kernel/numa_balancing"] == "0"
    assert json.loads((tiny[0] / "manifest.json").read_text())["command"][-3:] == ["tiny", "--out", str(tiny[0])]


def test_rerun_interrupted_by_ctrl_c_keeps_finished_runs_and_leaves_no_qemu(tiny, guest_qemus):
    out = tiny[0].parent / "rerun"
    proc = subprocess.Popen([*TESTBED, "eval", "--rerun", str(tiny[0] / "manifest.json"), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    qemus: set[int] = set()
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            qemus |= set(guest_qemus(proc.pid))
            if (out / "results.json").exists() and results.read(out):
                break
            time.sleep(1)
        assert proc.poll() is None, "the rerun ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output[-3000:]
    assert qemus, "no QEMU child was seen"
    assert all(not Path(f"/proc/{p}").exists() for p in qemus)
    runs = results.read(out)
    finished = [r for r in runs if not r.interrupted]
    assert 1 <= len(finished) < 4 and all(r.ok for r in finished), [r.error for r in runs]
    assert all(r.interrupted for r in runs[len(finished):]) and len(runs) - len(finished) <= 1
    assert FILES <= {p.name for p in out.iterdir()}
    rerun = manifest.read(out / "manifest.json")
    assert rerun.matrix.text == manifest.read(tiny[0] / "manifest.json").matrix.text
