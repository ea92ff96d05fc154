"""Workload files and the skewed kernel: the files load and fill their templates, and the program,
built static and run on the host, really is skewed, mixed and seeded as asked."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path

import pytest

from testbed import guest_binary
from testbed.evaluation import workload
from testbed.evaluation.adapters import AdapterError, keyvalue
from testbed.evaluation.datafile import DataFileError

from .conftest import WORKLOAD_SOURCE

MINIMAL = """
description = "a test workload"
source = "prog.c"
args = ["n={n}", "seed={seed}"]
primary = "ops_per_s"
[params]
n = 3
"""


# ---- files -----------------------------------------------------------------


def test_shipped_workloads_load_and_differ_in_their_mix():
    names = workload.available()
    assert {"skewed-read", "skewed-write"} <= set(names)
    read, write = (workload.load(workload.resolve(n)) for n in ("skewed-read", "skewed-write"))
    assert "reads=0.95" in read.argv(1) and "reads=0.1" in write.argv(1)
    assert read.source_path() == WORKLOAD_SOURCE
    assert read.digest() != write.digest()


def test_argv_fills_params_overrides_and_runner_paths():
    w = workload.load(workload.resolve("skewed-read"))
    argv = w.argv(7, params={"size_mib": 64}, wait="/tmp/go", hotmap="/tmp/hot")
    assert argv[0] == "/usr/local/bin/skewed_access"
    assert "size_mib=64" in argv and "seed=7" in argv and "hot_mib=128" in argv
    assert argv[-2:] == ["wait=/tmp/go", "hotmap=/tmp/hot"]
    assert w.command(7, prefix=["numactl", "--membind=1"]).startswith("setarch -R numactl --membind=1 /usr/local/bin/")
    with pytest.raises(workload.WorkloadError, match="no parameter 'sise_mib'"):
        w.argv(1, params={"sise_mib": 1})


def test_a_program_without_a_wait_option_refuses_a_wait_path(write_file):
    write_file("prog.c", "int main(void){return 0;}\n")
    w = workload.load(write_file("mini.toml", MINIMAL))
    assert w.argv(4) == ["/usr/local/bin/prog", "n=3", "seed=4"]
    with pytest.raises(workload.WorkloadError, match="cannot take '/tmp/go'"):
        w.argv(4, wait="/tmp/go")


@pytest.mark.parametrize("change, field, value", [
    ('args = ["n={m}"]', "args[0]", "{m}"),
    ('adapter = "xml"', "adapter", "xml"),
    ('wait_arg = "wait"', "wait_arg", "wait"),
    ('executable = "/bin/true"', "give exactly one of source", "/bin/true"),
    ('timeout_s = -1', "timeout_s", "-1"),
    ('params = { seed = 3 }', "params.seed", "3"),
])
def test_workload_errors_name_file_field_and_value(write_file, change, field, value):
    write_file("prog.c", "int main(void){return 0;}\n")
    key = change.split("=")[0].strip()
    lines = [line for line in MINIMAL.splitlines() if not line.startswith(key + " ")]
    if key == "params":
        lines = lines[:lines.index("[params]")]
    path = write_file("w.toml", "\n".join([change, *lines]) + "\n")
    with pytest.raises(DataFileError) as err:
        workload.load(path)
    assert str(path) in str(err.value) and field in str(err.value) and value in str(err.value), err.value


def test_missing_source_is_named(write_file):
    path = write_file("w.toml", MINIMAL)
    with pytest.raises(DataFileError, match=r"source: no such file .*prog\.c"):
        workload.load(path)


def test_keyvalue_adapter_takes_the_last_figures_line():
    out = "ready pid=42\nnoise here\nworkload=x ops=10 ops_per_s=2.5e3\n\n"
    assert keyvalue(out) == {"ops": 10.0, "ops_per_s": 2500.0}
    with pytest.raises(AdapterError):
        keyvalue("nothing useful\n")


def test_parse_requires_the_primary_figure():
    w = workload.load(workload.resolve("skewed-read"))
    assert w.parse("a=1 ops_per_s=5\n")["ops_per_s"] == 5
    with pytest.raises(workload.WorkloadError, match="no 'ops_per_s' figure"):
        w.parse("ready pid=12\npid=12 ops=3\n")
    assert workload.ready_pid("x\nready pid=321\n") == 321 and workload.ready_pid("x=1\n") is None


# ---- the program, on the host -----------------------------------------------


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    """The kernel built static in a private cache, once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLAMAS_CACHE", str(tmp_path_factory.mktemp("cache")))
        return guest_binary.build(WORKLOAD_SOURCE)


def run(program: Path, **options) -> dict[str, float]:
    args = [f"{k}={v}" for k, v in {"size_mib": 64, "hot_mib": 8, "ops": 300000, **options}.items()]
    out = subprocess.run([str(program), *args], capture_output=True, text=True, timeout=120, check=True).stdout
    return keyvalue(out)


def test_binary_is_static_and_cached_by_digest(program, host_cache):
    headers = subprocess.run(["readelf", "-l", str(program)], capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in headers and "LOAD" in headers  # no dynamic loader: runs in any guest
    built = guest_binary.build(WORKLOAD_SOURCE)
    assert built.parent == host_cache / "bin" and built.name == program.name
    assert guest_binary.build(WORKLOAD_SOURCE).stat().st_mtime == built.stat().st_mtime  # not rebuilt


def test_bad_source_fails_with_the_compiler_message(write_file, host_cache):
    with pytest.raises(guest_binary.GuestBinaryError, match="compiling .*broken.c failed"):
        guest_binary.build(write_file("broken.c", "int main(void) { return x; }\n"))


@pytest.mark.parametrize("hot_share", [0.125, 0.6, 0.9, 0.99])
def test_the_hot_set_gets_the_configured_share(program, hot_share):
    figures = run(program, hot_share=hot_share)
    # 300k draws: the binomial standard deviation is below 0.001
    assert figures["expected_hot_share"] == pytest.approx(hot_share, abs=1e-4)
    assert figures["hot_share"] == pytest.approx(hot_share, abs=0.005)
    assert figures["hot_ops"] == pytest.approx(hot_share * figures["ops"], rel=0.02)
    assert (figures["theta"] == 0) == (hot_share == 0.125)  # 8/64 MiB: uniform


def test_a_step_law_is_flat_inside_the_hot_set_and_zipf_is_not(program):
    step, zipf = run(program, hot_share=0.99, law="step"), run(program, hot_share=0.99)
    assert step["step"] == 1 and step["theta"] == 0 and zipf["step"] == 0 and zipf["theta"] > 1
    for figures in (step, zipf):
        assert figures["hot_share"] == pytest.approx(0.99, abs=0.005)
    # the hot set's hottest eighth: an eighth of its operations under a step, nearly all under Zipf
    assert step["head_ops"] / step["hot_ops"] == pytest.approx(1 / 8, abs=0.01)
    assert zipf["head_ops"] / zipf["hot_ops"] > 0.9


def test_a_census_locates_a_sample_of_the_hot_set_and_of_the_rest(program):
    args = [str(program), "size_mib=64", "hot_mib=8", "log_mib=40", "seconds=1", "tick_ms=100", "census_ticks=4"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    taken = workload.census(out)
    assert len(taken) >= 2 and taken[-1][0] >= 1.0  # every 4 ticks (a busy host may skip one), and at the end
    for _, where in taken:  # every page is somewhere: 8 MiB hot, every 4th of the 56 MiB cold, every 3rd of the log
        assert sum(where["hot"].values()) == 2048 and sum(where["cold"].values()) == 56 * 256 // 4
        assert sum(where["log"].values()) == -(-40 * 256 // 3)
    assert "log" not in workload.census("census t=1.0 hot=0:5 cold=0:5 ms=0.1\n")[0][1]  # no log, no class
    assert workload.census("census t=1.0 hot=error:1 cold=0:5 ms=0.1\n") == []  # refused: not "nowhere"


def test_skewed_and_uniform_runs_differ(program):
    skewed, uniform = run(program, hot_share=0.95), run(program, hot_share=0.125)
    assert skewed["hot_share"] > 0.9
    assert uniform["hot_share"] < 0.2


@pytest.mark.parametrize("reads", [0.0, 0.1, 0.95, 1.0])
def test_the_read_write_mix_is_as_asked(program, reads):
    figures = run(program, reads=reads)
    assert figures["reads"] + figures["writes"] == figures["ops"]
    assert figures["reads"] / figures["ops"] == pytest.approx(reads, abs=0.005)


def test_a_log_takes_every_write_and_the_table_every_read(program):
    only_writes = run(program, reads=0, log_mib=8)
    assert only_writes["log_writes"] == only_writes["writes"] == only_writes["ops"] and only_writes["hot_ops"] == 0
    mixed = run(program, reads=0.5, log_mib=8, hot_share=0.9)
    assert mixed["log_writes"] == mixed["writes"] and mixed["reads"] / mixed["ops"] == pytest.approx(0.5, abs=0.005)
    assert mixed["hot_share"] == pytest.approx(0.9, abs=0.005)  # of the table's operations, as without a log
    assert run(program, reads=0)["log_writes"] == 0


def test_a_seed_fixes_the_sequence(program):
    a, b, c = run(program, seed=3, reads=0.5), run(program, seed=3, reads=0.5), run(program, seed=4, reads=0.5)
    assert (a["hot_ops"], a["reads"], a["checksum"]) == (b["hot_ops"], b["reads"], b["checksum"])
    assert (a["hot_ops"], a["reads"]) != (c["hot_ops"], c["reads"])


def _hotmap(program: Path, tmp_path: Path, hot_at: str) -> list[int]:
    path = tmp_path / f"hot-{hot_at}.txt"
    run(program, hot_at=hot_at, hotmap=path, ops=10)
    return [int(line, 16) for line in path.read_text().split()]


def test_hotmap_places_the_hot_set_at_the_tail_or_scattered(program, tmp_path):
    granules_hot, granules_all = 8 * 256, 64 * 256
    tail = _hotmap(program, tmp_path, "tail")
    assert len(tail) == granules_hot and len(set(tail)) == granules_hot
    assert all(a % 4096 == 0 for a in tail)
    # tail: the hottest granule is the buffer's last, then downwards, contiguously
    assert tail == sorted(tail, reverse=True) and tail[0] - tail[-1] == (granules_hot - 1) * 4096
    scattered = _hotmap(program, tmp_path, "scattered")
    assert len(set(scattered)) == granules_hot
    span = (max(scattered) - min(scattered)) // 4096
    assert span > granules_all // 2  # spread over the buffer, not a block


def test_wait_gate_holds_the_timed_phase_until_the_file_appears(program, tmp_path):
    gate = tmp_path / "go"
    proc = subprocess.Popen([str(program), "size_mib=16", "hot_mib=4", "ops=1000", f"wait={gate}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert workload.ready_pid(first) == proc.pid
        time.sleep(0.3)
        assert proc.poll() is None  # still waiting
        gate.touch()
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert keyvalue(rest)["ops"] == 1000


@pytest.mark.parametrize("args, message", [
    (["size_mib=8", "hot_mib=16"], "hot_mib <= size_mib"),
    (["hot_share=0.01"], "hot_share must lie"),
    (["reads=2"], "reads wants a fraction"),
    (["colour=red"], "unknown option colour"),
    (["hot_at=middle"], "hot_at=middle"),
    (["law=pareto"], "law=pareto: want zipf or step"),
    (["ops"], "not key=value"),
])
def test_bad_arguments_exit_2_with_a_message(program, args, message):
    result = subprocess.run([str(program), *args], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and message in result.stderr


def test_the_roles_line_names_latency_critical_and_batch_pids():
    output = "roles latency=311,305 batch=320\nready pid=311\n"
    assert workload.roles(output) == {"latency": [311, 305], "batch": [320]}
    assert workload.roles("ready pid=311\n") is None
    assert workload.roles("roles latency= batch=3\n") is None


def test_mixed_installs_its_batch_helper_and_names_roles():
    w = workload.load(workload.resolve("mixed"))
    assert w.roles and [p.name for p in w.helper_paths()] == ["cpu_batch.c"]
    assert w.primary == "p99_ms" and not w.higher_is_better and "batch_ops_per_s" in w.also
    assert "batch_threads=4" in w.argv(seed=1)


def test_a_time_based_run_gets_its_duration_and_tick():
    w = workload.load(workload.resolve("skewed-read"))
    argv = w.argv(1, seconds=60, tick_ms=250)
    assert argv[-2:] == ["seconds=60", "tick_ms=250"] and not any(a.startswith("seconds") for a in w.argv(1))
    redis = workload.load(workload.resolve("redis"))
    with pytest.raises(workload.WorkloadError, match="cannot run for a time"):
        redis.argv(1, seconds=10)


def test_ticks_are_read_from_the_output():
    out = "tick t=0.251 ops=1000\ntick t=0.500 ops=2100\nworkload=skewed_access ops=2100 ops_per_s=4200.0\n"
    assert workload.ticks(out) == [(0.251, 1000), (0.5, 2100)]
    assert workload.load(workload.resolve("skewed-read")).parse(out)["ops"] == 2100  # the last line, not a tick


def test_a_timed_loop_runs_for_its_seconds_and_ticks(program):
    out = subprocess.run([str(program), "size_mib=16", "hot_mib=2", "seconds=1.2", "tick_ms=200"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    ticks = workload.ticks(out)
    figures = keyvalue(out)
    assert 1.2 <= figures["seconds"] < 1.5 and len(ticks) == 6
    assert [round(t, 1) for t, _ in ticks] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.2]
    assert all(b > a for (_, a), (_, b) in itertools.pairwise(ticks))
    assert ticks[-1][1] == figures["ops"]
