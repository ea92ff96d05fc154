"""The driver on a real local Ray instance of two workers, with a worker function that makes runs
without a guest (the guest's part is tests/vm/test_cluster_vm.py): every cell once, the cell a killed
worker held run again elsewhere, a cell that kills every worker recorded as failed, a stop cancels."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from rich.console import Console

from testbed.cluster import connect, driver, work
from testbed.evaluation import manifest, matrix, results, resume, runner
from testbed.process import Terminated, stop_signals


@pytest.fixture(scope="module")
def cluster():
    c = connect.start(workers=2)
    yield c
    connect.stop(c)


@pytest.fixture
def evaluation(tmp_path):
    m = matrix.load(matrix.resolve("tiny"))
    man = manifest.collect(m, None, ["testbed", "eval", "tiny", "--workers", "2"])
    return runner.Evaluation(m, runner.Settings(out=tmp_path / "out"), man, Console(file=open(os.devnull, "w")))


def fake_work(marks: str, kill: dict[str, str], pause_s: float = 0.2):
    """A worker function: a run per key after `pause_s`; the key named `policy#repeat` in `kill` kills its
    worker ("once": on its first attempt only, "always": every time)."""

    def run_group(m, keys, endpoint, answers):
        node = work.node_id()
        me = work.host_name(node)
        yield work.Started(me, node)
        yield work.Prepared(me, {"facts": {"pid": os.getpid()}})
        for key in keys:
            time.sleep(pause_s)
            name = f"{key.policy}#{key.repeat}"
            mark = os.path.join(marks, name)
            if kill.get(name) == "always" or (kill.get(name) == "once" and not os.path.exists(mark)):
                open(mark, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            run = results.Run(topology=key.topology, workload=key.workload, policy=key.policy, repeat=key.repeat,
                              seed=key.seed, figures={"ops_per_s": 100.0 + key.repeat}, host=me)
            yield work.Finished(run.model_dump(mode="json"), {"k": 9.5, "pid": os.getpid()}, [])

    return run_group


def test_each_topology_is_dealt_into_at_most_one_group_per_worker():
    m = matrix.load(matrix.resolve("tiny"))
    dealt = driver.groups(m.runs(), workers=3)
    assert [len(g.keys) for g in dealt] == [2, 1, 1]
    assert sorted(k for g in dealt for k in g.keys) == sorted(m.runs())
    assert [len(g.keys) for g in driver.groups(m.runs(), workers=1)] == [4]


def test_every_cell_runs_once_on_the_workers_and_is_written(cluster, evaluation, tmp_path):
    driver.run_matrix(evaluation, cluster, fake_work(str(tmp_path), {}))
    runs = results.read(evaluation.settings.out)
    assert sorted(resume.key_of(r) for r in runs) == sorted(evaluation.matrix.runs())
    assert all(r.ok and r.attempts == 1 and r.host.count("/") == 1 for r in runs)
    man = manifest.read(evaluation.settings.out / "manifest.json")
    assert set(man.hosts) == {r.host for r in runs}
    assert all(h["plugin"]["dram-cxl"]["k"] == 9.5 for h in man.hosts.values())
    assert man.plugin["dram-cxl"]["k"] == 9.5


def test_the_cell_a_killed_worker_held_runs_again_and_nothing_finished_is_lost(cluster, evaluation, tmp_path):
    driver.run_matrix(evaluation, cluster, fake_work(str(tmp_path), {"oracle#1": "once"}))
    runs = results.read(evaluation.settings.out)
    assert sorted(resume.key_of(r) for r in runs) == sorted(evaluation.matrix.runs())  # each once
    assert all(r.ok for r in runs)
    assert {(r.policy, r.repeat): r.attempts for r in runs} == {("default", 0): 1, ("oracle", 0): 1,
                                                                ("default", 1): 1, ("oracle", 1): 2}


def test_a_cell_that_kills_every_worker_is_recorded_failed_and_the_matrix_goes_on(cluster, evaluation, tmp_path):
    driver.run_matrix(evaluation, cluster, fake_work(str(tmp_path), {"default#0": "always"}))
    runs = {(r.policy, r.repeat): r for r in results.read(evaluation.settings.out)}
    assert len(runs) == 4
    lost = runs["default", 0]
    assert not lost.ok and lost.attempts == driver.MAX_ATTEMPTS and "WorkerCrashedError" in lost.error
    assert all(r.ok for key, r in runs.items() if key != ("default", 0))


def test_a_stop_cancels_the_workers_keeps_what_finished_and_marks_what_was_cut(cluster, evaluation, tmp_path):
    timer = threading.Timer(12, os.kill, (os.getpid(), signal.SIGTERM))  # mid-way through the first runs
    timer.start()
    try:
        with stop_signals(), pytest.raises(Terminated):
            driver.run_matrix(evaluation, cluster, fake_work(str(tmp_path), {}, pause_s=8))
    finally:
        timer.cancel()
    runs = results.read(evaluation.settings.out)
    cut = [r for r in runs if r.interrupted]
    assert cut and all(not r.ok and r.host for r in cut)
    assert len({resume.key_of(r) for r in runs}) == len(runs) <= 4
    assert (evaluation.settings.out / "manifest.json").exists()
