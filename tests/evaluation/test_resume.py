"""--resume: which recorded runs are kept, and the errors when a folder cannot be resumed."""

from __future__ import annotations

import pytest

from testbed.evaluation import manifest, matrix, results, resume

from .conftest import make_run


@pytest.fixture
def tiny():
    return matrix.load(matrix.resolve("tiny"))  # dram-cxl, default and oracle, 2 repeats


def _record(out, m, runs):
    out.mkdir(exist_ok=True)
    man = manifest.collect(m, None, ["testbed", "eval", "tiny"])
    man.plugin = {"dram-cxl": {"k": 13.0}}
    man.llm = [manifest.LlmExchange(topology="dram-cxl", workload="skewed-read", repeat=r, model="m",
                                    prompt_digest="p" * 64, answer_digest="a" * 64) for r in (0, 1)]
    manifest.write(out, man)
    results.write(out, runs)
    return man


def test_finished_runs_are_kept_and_failed_cut_or_foreign_ones_are_not(tmp_path, tiny):
    runs = [make_run(policy="default", repeat=0), make_run(policy="oracle", repeat=0),
            make_run(policy="default", repeat=1, ok=False, error="boom"),
            make_run(policy="oracle", repeat=1, ok=False, interrupted=True, error="interrupted"),
            make_run(policy="damon", repeat=0),  # not a cell of this matrix
            make_run(policy="default", repeat=0)]  # the same cell twice: kept once
    _record(tmp_path, tiny, runs)
    kept, _ = resume.finished(tmp_path, tiny)
    assert [(r.policy, r.repeat) for r in kept] == [("default", 0), ("oracle", 0)]
    assert {resume.key_of(r) for r in kept} < set(tiny.runs())


def test_a_folder_without_results_resumes_from_nothing(tmp_path, tiny):
    _record(tmp_path, tiny, [])
    (tmp_path / results.JSON_NAME).unlink()
    assert resume.finished(tmp_path, tiny)[0] == []


def test_another_matrix_or_no_manifest_is_refused_naming_the_file(tmp_path, tiny):
    with pytest.raises(resume.ResumeError, match=r"manifest.json: no such manifest"):
        resume.finished(tmp_path, tiny)
    _record(tmp_path, tiny, [make_run()])
    other = matrix.from_text(tiny.text.replace("repeats = 2", "repeats = 3"), "tiny3.toml", name="tiny")
    with pytest.raises(resume.ResumeError, match=r"manifest.json: matrix.digest is [0-9a-f]{16}.*tiny3.toml"):
        resume.finished(tmp_path, other)
    (tmp_path / results.JSON_NAME).write_text("{")
    with pytest.raises(resume.ResumeError, match="results.json: cannot resume from it"):
        resume.finished(tmp_path, tiny)


def test_records_of_machines_that_will_not_boot_again_are_carried_over(tmp_path, tiny):
    recorded = _record(tmp_path, tiny, [])
    now = manifest.collect(tiny, None, ["testbed", "eval", "tiny", "--resume"])
    half = [make_run(policy="default", repeat=0)]
    resume.carry_over(recorded, now, tiny, half)
    assert now.plugin == {}  # dram-cxl boots again: the runner records it afresh
    assert [e.repeat for e in now.llm] == [0]
    every = [make_run(policy=p, repeat=r) for r in (0, 1) for p in ("default", "oracle")]
    now = manifest.collect(tiny, None, ["testbed", "eval", "tiny", "--resume"])
    resume.carry_over(recorded, now, tiny, every)
    assert now.plugin == {"dram-cxl": {"k": 13.0}} and [e.repeat for e in now.llm] == [0, 1]
