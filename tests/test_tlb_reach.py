"""tlb-reach's guest program, run on the host (same kernel interfaces), and the accessed-bit arithmetic."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from testbed import guest_binary, tlb_reach


@pytest.fixture(scope="module")
def program() -> Path:
    return guest_binary.build(tlb_reach.SOURCE)


def test_a_period_is_required(program):
    out = subprocess.run([str(program)], capture_output=True, text=True, timeout=10, check=False)
    assert out.returncode == 2 and "PERIOD_US" in out.stderr


def test_one_sleeper_pinned_to_each_cpu(program):
    proc = subprocess.Popen([str(program), "10000"])
    try:
        tasks = Path(f"/proc/{proc.pid}/task")
        expected = [(c,) for c in sorted(os.sched_getaffinity(0))]

        def pinned():  # each thread pins itself once it runs
            return sorted(tuple(sorted(os.sched_getaffinity(int(t.name)))) for t in tasks.iterdir())

        deadline = time.monotonic() + 5
        while pinned() != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pinned() == expected
        state = {(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()}
        assert state <= {"S", "R"}  # asleep between wake-ups, not spinning
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("rate, floor", [(0.0, 0.0), (50.0, 5.0), (200.0, 20.0), (1000.0, 20.0)])
def test_the_hardware_floor_is_the_chance_a_pass_falls_in_a_sample(rate, floor):
    assert tlb_reach.Seen(passes_per_s=rate, nr_accesses=0.0).floor == pytest.approx(floor)


@pytest.mark.parametrize("period_ms, reachable", [(5, 20.0), (10, 10.0), (20, 5.0)])
def test_a_sample_sees_a_page_only_if_a_flush_fell_in_it(period_ms, reachable):
    assert tlb_reach.Seen(passes_per_s=1000.0, nr_accesses=0.0).reachable(period_ms) == pytest.approx(reachable)
