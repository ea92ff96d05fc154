"""The Redis workload's script against Debian's real redis-server and redis-benchmark, on the host."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from testbed.evaluation import workload
from testbed.ports import free_port

SMALL = {"keys": 2000, "value_bytes": 1024, "requests": 2000, "clients": 4}


@pytest.fixture
def redis_workload():
    return workload.load(workload.resolve("redis"))


@pytest.fixture
def script(redis_workload):
    if not (shutil.which("redis-server") and shutil.which("redis-benchmark")):
        pytest.skip("redis-server and redis-benchmark are not installed (apt-get install redis-server)")
    return redis_workload.source_path()


def test_the_file_names_a_script_its_adapter_and_no_hot_map(redis_workload):
    assert redis_workload.source_path().suffix == ".sh"
    assert redis_workload.guest_program() == "/usr/local/bin/redis_load"
    assert redis_workload.hotmap_arg is None and redis_workload.adapter == "redis-benchmark-csv"
    argv = redis_workload.argv(1, params=SMALL, wait="/tmp/go")
    assert argv[1:] == ["keys=2000", "value_bytes=1024", "requests=2000", "clients=4", "wait=/tmp/go"]


def test_loads_waits_at_the_gate_then_reports_figures(redis_workload, script, tmp_path):
    gate = tmp_path / "go"
    argv = ["sh", str(script), *redis_workload.argv(1, params=SMALL, wait=str(gate))[1:], f"port={free_port()}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        server = workload.ready_pid(proc.stdout.readline())
        assert server is not None, proc.stderr.read()
        assert Path(f"/proc/{server}/comm").read_text().startswith("redis-server")
        rss_kib = int(next(line.split()[1] for line in Path(f"/proc/{server}/status").read_text().splitlines()
                           if line.startswith("VmRSS:")))
        assert rss_kib >= SMALL["keys"] * SMALL["value_bytes"] // 1024  # the values are loaded before the gate
        assert proc.poll() is None
        gate.touch()
        output, errors = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors
    figures = redis_workload.parse(output)
    assert figures["ops_per_s"] > 0 and figures["p99_ms"] > 0
    assert {"set_rps", "get_rps", "get_p99_ms"} <= set(figures)
    assert not Path(f"/proc/{server}").exists()  # the script takes its server with it


@pytest.mark.parametrize("arg, message", [("keys=many", "not a whole number"), ("colour=red", "unknown argument")])
def test_bad_arguments_exit_2_with_a_message(script, arg, message):
    done = subprocess.run(["sh", str(script), arg], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and message in done.stderr
