"""Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM at any moment of a command.

Each moment is an event the command itself reports under `-v` (or prints), never a sleep tuned to one
host: the signal goes out when the line appears. Whatever the moment: exit 130 (SIGINT) or 143
(SIGTERM), no QEMU left, and for an evaluation the finished runs kept and the cut one marked, and
`--resume` then runs only the missing cells.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from testbed.evaluation import results, resume

pytestmark = pytest.mark.vm

TESTBED = [sys.executable, "-m", "testbed.cli", "-v"]
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
QEMU_STARTED = re.compile(r"QEMU started \(pid (\d+)\)")
SIGNALS = [signal.SIGINT, signal.SIGTERM]


class Watched:
    """A `testbed` command in its own session, its output lines read as they come."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, guest_qemus, qemus: set[int], timeout: float = 600) -> None:
        """Return as soon as a line holds `text` (the signal should follow at once); note QEMUs seen meanwhile."""
        deadline, last_look = time.monotonic() + timeout, 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - last_look > 0.5:  # pgrep is slow: look now and then, not per line
                qemus |= set(guest_qemus(self.proc.pid))
                last_look = time.monotonic()
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                assert self.proc.poll() is None, f"ended before {text!r}:\n{''.join(self.seen)[-3000:]}"
                continue
            self.seen.append(line)
            started = QEMU_STARTED.search(line)  # the harness names each QEMU it starts: no race with pgrep
            if started:
                qemus.add(int(started.group(1)))
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(self.seen)[-3000:]}")

    def finish(self, timeout: float = 120) -> str:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        time.sleep(0.2)  # the reader thread drains the pipe
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def _gone(pids: set[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


# (moment, the line that marks it, the guest command): the command prints "command running" and either
# waits (so the signal lands while it runs) or ends (so the harness is shutting down when it lands).
EXEC_MOMENTS = [
    ("before QEMU", "choosing the accelerator", "echo command running; sleep 600"),
    ("during boot", "QEMU started", "echo command running; sleep 600"),
    ("during the SSH handshake", "SSH banner from the guest", "echo command running; sleep 600"),
    ("while the command runs", "command running", "echo command running; sleep 600"),
    ("during shutdown", "shutting down", "echo command running"),
]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("moment, marker, command", EXEC_MOMENTS, ids=[m[0] for m in EXEC_MOMENTS])
def test_exec_stops_at_any_moment(guest_image, guest_qemus, moment, marker, command, sig):
    # Shutdown lasts as long as QEMU takes to quit (tens of ms): if QEMU was gone before the signal went
    # out, the moment was missed (the command had finished), so try again; a live QEMU proves we hit it.
    for _attempt in range(3):
        run = Watched([*TESTBED, "exec", "dram-only", "--", "sh", "-c", command])
        qemus: set[int] = set()
        run.wait_for(marker, guest_qemus, qemus)
        os.killpg(run.proc.pid, sig)  # the whole group, as a terminal does; QEMU is in a group of its own
        hit = moment != "during shutdown" or any(_alive(p) for p in qemus)
        output = run.finish()
        if hit:
            break
    else:
        pytest.fail(f"{moment}: the signal never landed while QEMU was still up")
    assert run.proc.returncode == EXIT[sig], f"{moment}: exit {run.proc.returncode}\n{output[-3000:]}"
    assert _gone(qemus), f"{moment}: QEMU {qemus} outlived the command"
    if moment != "before QEMU":
        assert qemus, "no QEMU was seen"
    if moment in ("while the command runs", "during shutdown"):
        assert "shutting down" in output  # the harness shut QEMU down in order, not the signal


# tiny's cells without its latency emulation: the signals, not the figures, are under test here, and the
# calibration and trim check an emulated boot starts with would only add minutes before the first run.
MATRIX = """description = "Signals: dram-cxl, skewed-read, default vs oracle, no latency emulation"
topologies = ["dram-cxl"]
policies = ["default", "oracle"]
repeats = 2
latency = "advertised"
seed = 1
fast_node_free_mib = 128

[[workloads]]
name = "skewed-read"
params = { size_mib = 256, hot_mib = 32, ops = 100000 }
"""

# Each moment with one signal, not both: an evaluation costs a boot and its runs (minutes under TCG), the
# exec tests above already cross every moment with both signals, and the handler is one for the two.
EVAL_MOMENTS = [("between runs", "run 1 of dram-cxl written", signal.SIGINT),
                ("inside a run", ": timed phase", signal.SIGTERM)]


@pytest.mark.parametrize("moment, marker, sig", EVAL_MOMENTS, ids=[f"{m[0]}-{m[2].name}" for m in EVAL_MOMENTS])
def test_eval_stops_at_any_moment_and_keeps_finished_runs(guest_image, guest_qemus, tmp_path, moment, marker, sig):
    out, path = tmp_path / "out", tmp_path / "signals.toml"
    path.write_text(MATRIX)
    run = Watched([*TESTBED, "eval", str(path), "--out", str(out)])
    qemus: set[int] = set()
    run.wait_for(marker, guest_qemus, qemus, timeout=900)
    os.killpg(run.proc.pid, sig)
    output = run.finish()
    assert run.proc.returncode == EXIT[sig], f"{moment}: exit {run.proc.returncode}\n{output[-3000:]}"
    assert qemus and _gone(qemus), f"{moment}: QEMU {qemus} outlived the evaluation"
    runs = results.read(out)
    finished = [r for r in runs if not r.interrupted]
    assert len(runs) < 4 and all(r.ok for r in finished), [r.error for r in runs]
    assert all(r.interrupted and not r.ok for r in runs if r not in finished)
    if moment == "between runs":
        assert len(finished) >= 1
    else:
        assert runs and runs[-1].interrupted and "interrupted" in runs[-1].error
    assert {"results.json", "results.csv", "summary.txt", "manifest.json"} <= {p.name for p in out.iterdir()}
    if moment == "between runs":
        _resume_runs_only_what_is_missing(path, out, finished)


def _resume_runs_only_what_is_missing(path: Path, out: Path, finished: list[results.Run]) -> None:
    done = subprocess.run([*TESTBED, "eval", str(path), "--out", str(out), "--resume"], check=False,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"4 runs ({len(finished)} kept from the interrupted evaluation)" in done.stdout
    after = results.read(out)
    assert after[:len(finished)] == finished  # kept as recorded, not run again
    assert len(after) == 4 and all(r.ok and not r.interrupted for r in after), [r.error for r in after]
    assert len({resume.key_of(r) for r in after}) == 4  # every cell once
