"""The runner without a guest: node order, an interrupt leaves every file written, the CLI's argument checks."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from testbed import cli, process, topology
from testbed.evaluation import manifest, matrix, results, runner
from testbed.evaluation.summary import CSV_NAME, TXT_NAME

from .conftest import make_run


def test_fastest_nodes_follow_hmat_read_latency():
    assert runner.fastest_nodes(topology.load(topology.resolve("dram-nvm"))) == [0, 1]
    assert runner.fastest_nodes(topology.load(topology.resolve("dram-cxl"))) == [0, 1]


@pytest.fixture
def evaluation(tmp_path):
    m = matrix.load(matrix.resolve("tiny"))
    man = manifest.collect(m, None, ["testbed", "eval", "tiny"])
    return runner.Evaluation(m, runner.Settings(out=tmp_path / "out"), man, Console(file=open("/dev/null", "w")))


def test_an_interrupt_leaves_the_finished_runs_summary_plots_and_manifest(evaluation, monkeypatch):
    def two_runs_then_ctrl_c(ev, image, name, keys, starting):
        ev.fast_nodes[name] = 0
        yield make_run(policy="default", value=100.0, misses={0: 30, 1: 70})
        yield make_run(policy="oracle", value=180.0, misses={0: 80, 1: 20})
        ev.cut = make_run(policy="default", repeat=1, value=None, ok=False, error="interrupted: KeyboardInterrupt")
        ev.cut.interrupted = True
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "topology_runs", two_runs_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        runner.run_matrix(evaluation, image=None)
    out = evaluation.settings.out
    assert [(r.policy, r.interrupted) for r in results.read(out)] == [("default", False), ("oracle", False),
                                                                     ("default", True)]
    assert {p.name for p in out.iterdir()} >= {"results.json", "results.csv", TXT_NAME, CSV_NAME,
                                               "throughput.png", "node-share.png", "manifest.json"}
    assert "1.800" in (out / TXT_NAME).read_text()  # oracle / default, from the figures
    assert manifest.read(out / "manifest.json").matrix.name == "tiny"


@pytest.mark.parametrize("escaped, interrupted, error", [
    (KeyboardInterrupt(), True, "interrupted: KeyboardInterrupt"),
    (process.Terminated("terminated by SIGTERM"), True, "interrupted: Terminated terminated by SIGTERM"),
    (RuntimeError("a bug"), False, "RuntimeError: a bug")])
def test_a_run_cut_before_its_own_accounting_is_marked_by_what_cut_it(evaluation, monkeypatch, escaped,
                                                                     interrupted, error):
    # A signal sent as the last run is written lands in the next run's first lines, before run_one's
    # try (CI, 2026-12-05: that run was kept as a failure, "KeyboardInterrupt: ", not as cut short).
    def cut_in_its_first_lines(ev, bench, key, run):
        raise escaped

    monkeypatch.setattr(runner, "run_one", cut_in_its_first_lines)
    key = evaluation.matrix.runs()[1]
    with pytest.raises(type(escaped)):
        runner.measured_run(evaluation, bench=None, key=key)
    cut = evaluation.cut
    assert (cut.policy, cut.repeat, cut.ok, cut.interrupted, cut.error) == (key.policy, key.repeat, False,
                                                                            interrupted, error)
    assert cut.host == evaluation.host


def test_a_failed_run_is_kept_with_its_error(evaluation):
    evaluation.runs = [make_run(), make_run(policy="oracle", value=None, ok=False, error="GuestProcessError: boom")]
    rows = evaluation.write()
    data = json.loads((evaluation.settings.out / "results.json").read_text())
    assert data["runs"][1]["ok"] is False and data["runs"][1]["error"] == "GuestProcessError: boom"
    oracle = next(r for r in rows if r.policy == "oracle")
    assert (oracle.runs, oracle.failed, oracle.ratio) == (1, 1, None)


def test_eval_without_out_or_matrix_says_what_is_missing(tmp_path, capsys):
    with pytest.raises(SystemExit, match="give --out DIR"):
        cli.main(["eval", "tiny"])
    with pytest.raises(SystemExit, match=r"give a MATRIX .* or --rerun"):
        cli.main(["eval", "--out", str(tmp_path)])


def test_eval_rerun_of_a_missing_manifest_names_it(tmp_path, capsys):
    assert cli.main(["eval", "--rerun", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such manifest" in capsys.readouterr().err


def test_eval_of_a_bad_matrix_names_file_and_field(write_file, capsys):
    path = write_file("bad.toml", 'description = "x"\ntopologies = ["dram-cxl"]\npolicies = ["first-touch"]\n'
                                  'workloads = ["skewed-read"]\n')
    assert cli.main(["eval", str(path), "--out", str(path.parent / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "policies" in err and "first-touch" in err


def test_a_time_based_runs_headline_is_its_steady_state(write_file):
    timed = matrix.load(write_file("timed.toml", 'topologies = ["dram-nvm"]\nworkloads = ["skewed-read"]\n'
                                                 'policies = ["default"]\nduration_s = 5\nwarmup_s = 10\n'))
    run = runner.new_run(timed, timed.runs()[0])
    assert run.primary == runner.STEADY and run.also[0] == "ops_per_s"
    counted = matrix.load(matrix.resolve("tiny"))
    assert runner.new_run(counted, counted.runs()[0]).primary == "ops_per_s"


def test_an_interrupted_run_is_kept_marked_and_left_out_of_the_summary(evaluation):
    evaluation.runs = [make_run(), make_run(policy="oracle", value=None, ok=False, interrupted=True,
                                            error="interrupted: KeyboardInterrupt")]
    rows = evaluation.write()
    data = json.loads((evaluation.settings.out / "results.json").read_text())
    assert data["runs"][1]["interrupted"] is True
    assert [r.policy for r in rows] == ["default"]


def test_eval_on_ray_without_an_address_says_what_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cli.main(["eval", "tiny", "--out", str(tmp_path / "out"), "--ray"]) == 2
    assert "--ray without an ADDRESS needs RAY_ADDRESS" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written
