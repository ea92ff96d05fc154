"""`testbed eval MATRIX --out DIR --resume`: go on with an interrupted evaluation in its folder.

An evaluation rewrites DIR's results.json after every run, so a stopped one
(Ctrl-C, SIGTERM, a lost host) leaves every finished run behind.  Resuming
keeps those runs, provided DIR's manifest records the same matrix (the digest
of its text), and the runner runs only the cells that are missing; a run that
failed or was cut short is run again.  The manifest keeps what it recorded of
the machines whose runs are all kept (calibration, trims, time scale).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from . import manifest, results
from .matrix import Matrix, RunKey


class ResumeError(ValueError):
    """DIR holds no evaluation this matrix can resume."""


def key_of(run: results.Run) -> RunKey:
    """The matrix cell a recorded run measured."""
    return RunKey(run.topology, run.repeat, run.workload, run.policy, run.seed)


def finished(out: Path, matrix: Matrix) -> tuple[list[results.Run], manifest.Manifest]:
    """The runs in `out` that `matrix` need not run again, and the manifest they were recorded under."""
    path = out / manifest.NAME
    try:
        recorded = manifest.read(path)
    except manifest.ManifestError as exc:
        raise ResumeError(f"cannot resume: {exc}") from None
    digest = matrix.digest
    if recorded.matrix.digest != digest:
        raise ResumeError(f"{path}: matrix.digest is {recorded.matrix.digest[:16]}..., recorded for "
                          f"{recorded.matrix.origin!r}; {matrix.origin!r} is {digest[:16]}... (the matrix "
                          "changed since: run it into a new --out)")
    try:
        runs = results.read(out) if (out / results.JSON_NAME).exists() else []
    except (ValueError, ValidationError) as exc:
        raise ResumeError(f"{out / results.JSON_NAME}: cannot resume from it: {exc}") from None
    cells = set(matrix.runs())
    kept, seen = [], set()
    for run in runs:
        key = key_of(run)
        if run.ok and not run.interrupted and key in cells and key not in seen:
            kept.append(run)
            seen.add(key)
    return kept, recorded


def carry_over(recorded: manifest.Manifest, now: manifest.Manifest, matrix: Matrix,
               kept: list[results.Run]) -> None:
    """Keep in `now` what `recorded` says of the kept runs: the records of machines that will not boot
    again (every run of theirs is kept), and the LLM exchanges of kept runs."""
    done = {key_of(r) for r in kept}
    machines = {t for t in matrix.topologies if all(k in done for k in matrix.runs() if k.topology == t)}
    now.plugin.update({t: v for t, v in recorded.plugin.items() if t in machines})
    cells = {(r.topology, r.workload, r.repeat) for r in kept}
    now.llm = [e for e in recorded.llm if (e.topology, e.workload, e.repeat) in cells] + now.llm
