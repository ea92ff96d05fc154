"""Output adapters: the key=value lines of our own programs, and redis-benchmark's CSV from the real tool."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from testbed.evaluation.adapters import (
    ADAPTERS,
    AdapterError,
    keyvalue,
    redis_benchmark_csv,
)
from testbed.ports import free_port

CSV = '''"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","100.00","0.5","0.1","0.4","0.8","1.5","4.0"
"GET","300.00","0.2","0.1","0.2","0.3","0.4","2.0"
'''


def test_keyvalue_ignores_words_and_non_numbers():
    assert keyvalue("workload=skewed ops=5 rate=1e3\n") == {"ops": 5.0, "rate": 1000.0}
    with pytest.raises(AdapterError):
        keyvalue("")


def test_redis_csv_figures_by_hand():
    figures = redis_benchmark_csv("progress noise\r\n" + CSV)
    assert figures["set_rps"] == 100 and figures["get_p99_ms"] == 0.4 and figures["set_avg_ms"] == 0.5
    assert figures["ops_per_s"] == pytest.approx(2 / (1 / 100 + 1 / 300))  # = 150: equal -n, run in turn
    assert figures["p99_ms"] == 1.5
    with pytest.raises(AdapterError, match="no redis-benchmark CSV"):
        redis_benchmark_csv("Could not connect to Redis at 127.0.0.1:6379\n")
    assert ADAPTERS["redis-benchmark-csv"] is redis_benchmark_csv


@pytest.fixture
def redis_port():
    if not (shutil.which("redis-server") and shutil.which("redis-benchmark")):
        pytest.skip("redis-server and redis-benchmark are not installed (apt-get install redis-server)")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_redis_csv_from_the_real_tool(redis_port):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(redis_port), "-t", "set,get",
                          "-n", "3000", "-r", "10000", "--csv"], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    figures = redis_benchmark_csv(out)
    assert {"set_rps", "get_rps", "set_p99_ms", "get_p99_ms"} <= set(figures)
    assert min(figures["set_rps"], figures["get_rps"]) <= figures["ops_per_s"] <= max(figures["set_rps"],
                                                                                      figures["get_rps"])
    assert figures["p99_ms"] == max(figures["set_p99_ms"], figures["get_p99_ms"]) > 0
    assert figures["get_p50_ms"] <= figures["get_p99_ms"] <= figures["get_max_ms"]


def test_a_batch_job_beside_the_server_adds_its_figures():
    figures = redis_benchmark_csv(CSV + "batch_threads=4 batch_ops=800 batch_seconds=2.000 batch_ops_per_s=400.0\n")
    assert figures["batch_ops_per_s"] == 400 and figures["batch_threads"] == 4
    assert figures["p99_ms"] == 1.5  # the server's figures are untouched
    assert "batch_ops_per_s" not in redis_benchmark_csv(CSV)
