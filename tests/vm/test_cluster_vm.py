"""A matrix on a real two-node Ray cluster on this machine: a head and a worker joined with
`ray start --address`, one CPU each, the real `testbed eval --ray ADDRESS`.

One evaluation shows what issue 15 asks of a cluster: runs on both nodes, in the serial schema, and
a worker killed mid-run (SIGKILL, its guest dies with it) whose run is retried once on the other node
while nothing finished is lost or run twice; a second shows Ctrl-C on the driver cancelling the
workers' runs and leaving no QEMU on any node.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.cluster.connect import LOCAL_NODE_IP
from testbed.evaluation import manifest, matrix, results, resume

pytestmark = pytest.mark.vm

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
TESTBED = [sys.executable, "-m", "testbed.cli"]
RUN_LINE = re.compile(r"dram-cxl skewed-read (\w+) #(\d) on (\S+): ")
# No latency emulation (no calibration to wait for): this is about where runs go, not what they measure.
MATRIX = """description = "Two Ray nodes: dram-cxl, skewed-read, default vs oracle"
topologies = ["dram-cxl"]
policies = ["default", "oracle"]
repeats = 2
latency = "advertised"
seed = 1

[[workloads]]
name = "skewed-read"
params = { size_mib = 128, hot_mib = 16, ops = 50000 }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _node_of(pid: int) -> str:
    """The Ray node a worker's child belongs to: its raylet's --node_id (the raylet pid is in its environment)."""
    raylet = _environ(pid).get("RAY_RAYLET_PID")
    if raylet is None:
        return ""
    args = Path(f"/proc/{raylet}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return next((a.split("=", 1)[1] for a in args if a.startswith("--node_id=")), "")


def _guest_qemus() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "qemu-system.* -name llamas-"], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


@pytest.fixture(scope="module")
def two_nodes():
    """`ray start --head` and `ray start --address` as children of this test, each with one CPU, on loopback."""
    temp = tempfile.mkdtemp(prefix="llr-")  # short: Ray's socket paths live under it
    port = _free_port()
    address = f"{LOCAL_NODE_IP}:{port}"
    # Ray's token authentication, with a token of this test's own for the nodes, `ray status` and the driver
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                        "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    common = ["--block", "--num-cpus=1", f"--node-ip-address={LOCAL_NODE_IP}", f"--temp-dir={temp}",
              "--disable-usage-stats", f"--object-store-memory={128 << 20}"]
    nodes = [subprocess.Popen([*RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        _wait_for_cpus(address, 1, env)
        nodes.append(subprocess.Popen([*RAY, "start", f"--address={address}", *common], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_for_cpus(address, 2, env)
        yield address, env
    finally:
        for node in reversed(nodes):  # --block: SIGTERM stops the node's processes
            os.killpg(node.pid, signal.SIGTERM)
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        shutil.rmtree(temp, ignore_errors=True)  # the nodes' logs and sockets


def _wait_for_cpus(address: str, cpus: int, env: dict[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run([*RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True,
                                check=False)
        if f"/{cpus}.0 CPU" in status.stdout:
            return
        time.sleep(1)
    raise AssertionError(f"the Ray cluster at {address} did not reach {cpus} CPUs:\n{status.stdout}{status.stderr}")


def _start_eval(tmp_path: Path, cluster: tuple[str, dict[str, str]]) -> tuple[subprocess.Popen, Path, Path]:
    address, env = cluster
    path = tmp_path / "two-nodes.toml"
    path.write_text(MATRIX)
    out = tmp_path / "out"
    proc = subprocess.Popen([*TESTBED, "eval", str(path), "--out", str(out), "--ray", address], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, path, out


def _first_run(proc: subprocess.Popen, seen: list[str]) -> re.Match:
    for line in proc.stdout:
        seen.append(line)
        if found := RUN_LINE.search(line):
            return found
    raise AssertionError(f"the evaluation ended before any run:\n{''.join(seen)[-3000:]}")


def _drive(proc: subprocess.Popen, act: Callable[[re.Match, list[str]], None], timeout: int) -> str:
    """Wait for the first run line, `act` on it, then let the driver finish; its whole output."""
    seen: list[str] = []
    try:
        act(_first_run(proc, seen), seen)
        rest, _ = proc.communicate(timeout=timeout)
        seen.append(rest)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return "".join(seen)


def _kill_the_worker_of(first: re.Match, seen: list[str]) -> None:
    """That run's node's worker is now in its group's second run: kill it, and its guest dies with it."""
    node8 = first.group(3).rsplit("/", 1)[1]
    held = [q for q in _guest_qemus() if _node_of(q).startswith(node8)]
    assert len(held) == 1, (held, node8, "".join(seen))
    worker = int(Path(f"/proc/{held[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(worker, signal.SIGKILL)


def test_runs_spread_over_both_nodes_and_a_killed_worker_loses_nothing(two_nodes, tmp_path):
    proc, path, out = _start_eval(tmp_path, two_nodes)
    seen = _drive(proc, _kill_the_worker_of, timeout=900)
    assert proc.returncode == 0, seen[-4000:]
    runs = results.read(out)
    cells = matrix.load(path).runs()
    assert sorted(resume.key_of(r) for r in runs) == sorted(cells)  # every cell once: none lost, none twice
    assert all(r.ok for r in runs), [r.error for r in runs]
    assert sorted(r.attempts for r in runs) == [1, 1, 1, 2]  # the killed run, retried once
    hosts = {r.host for r in runs}
    assert len(hosts) == 2 and all(h.startswith(socket.gethostname() + "/") for h in hosts)
    recorded = manifest.read(out / "manifest.json")
    assert set(recorded.hosts) == hosts and all(h["facts"]["cpus"] >= 1 for h in recorded.hosts.values())
    assert results.read(out / "results.csv") == runs  # the serial schema, with host and attempts
    assert _guest_qemus() == []
    assert "attempt 1 lost on" in seen


def test_ctrl_c_on_the_driver_cancels_every_workers_run_and_resume_runs_the_rest(two_nodes, tmp_path):
    proc, path, out = _start_eval(tmp_path, two_nodes)
    seen = _drive(proc, lambda *_: os.killpg(proc.pid, signal.SIGINT), timeout=300)  # as a terminal sends it
    assert proc.returncode == 130, seen[-4000:]
    runs = results.read(out)
    assert any(r.ok for r in runs) and any(r.interrupted for r in runs), [(r.ok, r.error) for r in runs]
    assert len({resume.key_of(r) for r in runs}) == len(runs)
    assert _guest_qemus() == []  # the driver waited for each worker to shut its guest down
    kept = [r for r in runs if r.ok]
    address, env = two_nodes
    done = subprocess.run([*TESTBED, "eval", str(path), "--out", str(out), "--ray", address, "--resume"],
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = results.read(out)
    assert after[:len(kept)] == kept  # kept as recorded, only the missing cells ran
    assert sorted(resume.key_of(r) for r in after) == sorted(matrix.load(path).runs())
    assert all(r.ok for r in after)
