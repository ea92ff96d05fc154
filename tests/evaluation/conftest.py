"""Fixtures of the evaluation harness's tests: matrix and workload files in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.evaluation.results import NodeCounters, Run

WORKLOAD_SOURCE = Path(__file__).resolve().parents[2] / "benchmarks" / "workloads" / "src" / "skewed_access.c"


@pytest.fixture
def write_file(tmp_path: Path):
    """Write text to `<tmp>/<name>` and return the path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def host_cache(tmp_path: Path, monkeypatch) -> Path:
    """A private testbed cache, so builds in tests never touch the user's."""
    root = tmp_path / "cache"
    monkeypatch.setenv("LLAMAS_CACHE", str(root))
    return root


def make_run(topology="dram-cxl", workload="skewed-read", policy="default", repeat=0, value=100.0,
             misses=None, **kwargs) -> Run:
    """A run with headline figure `value` and, if given, misses per node {node: count}."""
    counters = {n: NodeCounters(accesses=3 * m, reads=2 * m, writes=m, misses=m, read_misses=m, delay_ns=7 * m)
                for n, m in (misses or {}).items()}
    figures = {} if value is None else {"ops_per_s": value, "hot_share": 0.9}
    return Run(topology=topology, workload=workload, policy=policy, repeat=repeat, seed=1 + repeat,
               figures=figures, counters=counters, **kwargs)


class ScriptedShell:
    """A stand-in for GuestShell in unit tests of parsing: answers each command by the first key it starts
    with (else empty output), and records every command. Behaviour that matters is tested in a VM."""

    def __init__(self, answers: dict[str, str]):
        self.answers, self.commands = answers, []

    def run(self, command: str, check: bool = True, timeout: float | None = None):
        from testbed.ssh import CommandResult

        self.commands.append(command)
        out = next((text for prefix, text in self.answers.items() if command.startswith(prefix)), "")
        return CommandResult(command, 0, out, "")


@pytest.fixture
def fake_shell():
    """`fake_shell({prefix: stdout})`: a ScriptedShell."""
    return ScriptedShell
