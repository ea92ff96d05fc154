"""The mixed workload end to end on hybrid-cores: `testbed eval tiny-mixed` as a real command.

The server and its load generator, the batch job beside them, the script's roles
line, the oracle's placement through the agent, and a summary with the server's
p99 and the batch job's throughput per policy.
"""

from __future__ import annotations

import csv
import json

import pytest

from testbed.evaluation import results

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def mixed(run_eval):
    return run_eval("tiny-mixed", timeout=1200)[0]


def test_both_policies_measure_the_server_and_the_batch_job(mixed):
    runs = {r.policy: r for r in results.read(mixed)}
    assert set(runs) == {"default", "oracle"} and all(r.ok for r in runs.values()), runs
    for run in runs.values():
        assert run.primary == "p99_ms" and run.figures["p99_ms"] > 0
        assert run.figures["batch_threads"] == 4 and run.figures["batch_ops_per_s"] > 0
        assert run.figures["ops_per_s"] > 0
    # The oracle pinned the server and the script (whose redis-benchmark inherits it) and the batch job,
    # moved the batch job's pages to node 1 (hybrid-cores' slower node) and the first two's off it.
    assert (runs["oracle"].hints_applied, runs["oracle"].hints_rejected) == (6, 0)
    assert runs["default"].hints_applied == 0


def test_summary_has_a_row_per_figure_and_policy(mixed):
    with open(mixed / "summary.csv") as f:
        rows = {(r["figure"], r["policy"]): r for r in csv.DictReader(f)}
    assert set(rows) == {(fig, pol) for fig in ("p99_ms", "ops_per_s", "batch_ops_per_s")
                         for pol in ("default", "oracle")}
    assert rows[("p99_ms", "default")]["ratio"] == "1.0"
    assert float(rows[("p99_ms", "oracle")]["ratio"]) > 0


def test_manifest_records_the_core_speeds_and_paces(mixed):
    plugin = json.loads((mixed / "manifest.json").read_text())["plugin"]["hybrid-cores"]
    assert plugin["core_speeds"] == {"0": 1.0, "1": 1.0, "2": 0.4, "3": 0.4}
    assert set(plugin["pace_permille"]) == {"2", "3"}
    assert all(1 <= p <= 1000 for p in plugin["pace_permille"].values())
    assert plugin["tcg_threads"] == "multi"  # pacing needs a TCG thread per vCPU
