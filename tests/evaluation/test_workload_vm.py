"""Workloads in a real guest: the skewed kernel built on the host, copied in, bound to each node of dram-cxl;
Redis from the image's Debian packages, driven by redis-benchmark.

One boot.  For each node the program starts gated; while it waits, the
guest kernel's /proc/PID/numa_maps must show its buffer on the bound node
(and nothing on the other); then it runs and its figures parse.
"""

from __future__ import annotations

import re
import shlex
import time

import pytest

from testbed.evaluation import guest_process, policies, squeeze, workload

pytestmark = pytest.mark.vm

SIZE_MIB, HOT_MIB, OPS = 64, 8, 200_000
ADDR_NO_RANDOMIZE = 0x0040000  # include/uapi/linux/personality.h


def largest_anon(numa_maps: str) -> str:
    """The numa_maps line of the largest anonymous mapping: the workload's buffer."""
    anon = [line for line in numa_maps.splitlines() if " anon=" in line]
    return max(anon, key=lambda line: int(re.search(r" anon=(\d+)", line).group(1)))


def buffer_pages_per_node(numa_maps: str) -> dict[int, int]:
    """The N<node>=<pages> fields of the workload's buffer."""
    return {int(node): int(pages) for node, pages in re.findall(r"\bN(\d+)=(\d+)", largest_anon(numa_maps))}


@pytest.fixture(scope="module")
def guest(booted_vm):
    vm = booted_vm("dram-cxl")
    return vm


@pytest.mark.parametrize("node", [0, 1])
def test_skewed_workload_bound_to_a_node(guest, node):
    w = workload.load(workload.resolve("skewed-read"))
    assert w.install(guest.shell) == "/usr/local/bin/skewed_access"
    proc = guest_process.GuestProcess(guest.shell, f"skewed-node{node}")
    command = w.command(seed=3, prefix=["numactl", f"--membind={node}", "--cpunodebind=0"],
                        params={"size_mib": SIZE_MIB, "hot_mib": HOT_MIB, "ops": OPS}, wait=proc.gate)
    guest_process.start(proc, command, gated=True, timeout=300)
    try:
        placed = buffer_pages_per_node(guest.shell.run(f"cat /proc/{proc.pid}/numa_maps").stdout)
        assert placed == {node: SIZE_MIB * 256}, placed  # every 4 KiB page of the buffer, on the bound node
    finally:
        guest_process.release(proc)
    figures = w.parse(guest_process.finish(proc, timeout=w.timeout_s))
    assert figures["ops"] == OPS and figures["ops_per_s"] > 0
    assert figures["hot_share"] == pytest.approx(0.9, abs=0.01)
    assert figures["reads"] / OPS == pytest.approx(0.95, abs=0.01)
    assert figures["seed"] == 3 and figures["size_mib"] == SIZE_MIB


def test_every_run_lays_its_memory_out_alike_and_one_shell_opens_the_gate_and_waits(guest):
    w = workload.load(workload.resolve("skewed-read"))
    w.install(guest.shell)
    starts, procs = [], []
    for run in range(2):  # two programs of one seed, side by side: the same addresses, not two random bases
        proc = guest_process.GuestProcess(guest.shell, f"skewed-layout{run}")
        command = w.command(seed=1, params={"size_mib": SIZE_MIB, "hot_mib": HOT_MIB, "ops": OPS}, wait=proc.gate)
        guest_process.start(proc, command, gated=True, timeout=300)
        procs.append(proc)
        personality = int(guest.shell.run(f"cat /proc/{proc.pid}/personality").stdout, 16)
        assert personality & ADDR_NO_RANDOMIZE, hex(personality)
        maps = guest.shell.run(f"cat /proc/{proc.pid}/maps").stdout
        starts.append({line.split()[-1]: line.split("-")[0] for line in maps.splitlines()
                       if line.endswith(("[heap]", "[stack]"))}
                      | {"buffer": largest_anon(guest.shell.run(f"cat /proc/{proc.pid}/numa_maps").stdout).split()[0]})
    assert starts[0] == starts[1], starts
    for proc in procs:
        figures = w.parse(guest_process.release_and_finish(proc, timeout=w.timeout_s))
        assert figures["ops"] == OPS


def test_a_failing_workload_reports_its_output(guest):
    w = workload.load(workload.resolve("skewed-read"))
    w.install(guest.shell)
    proc = guest_process.GuestProcess(guest.shell, "skewed-bad")
    command = w.command(seed=1, params={"size_mib": 4, "hot_mib": 8}, wait=proc.gate)
    with pytest.raises(guest_process.GuestProcessError, match="(?s)status 2 before it was ready.*hot_mib <= size_mib"):
        guest_process.start(proc, command, gated=True, timeout=60)


def test_squeeze_shrinks_the_fast_node_so_first_touch_spills(guest):
    before = squeeze.node_free_mib(guest.shell, 0)
    held = squeeze.squeeze(guest.shell, 0, leave_mib=96)
    try:
        # whole 2 MiB pages, as many as formed; the node may have freed more since `before` (page cache)
        assert held.held_mib >= 0.9 * (before - 96)
        assert 64 <= squeeze.node_free_mib(guest.shell, 0) <= 128
        w = workload.load(workload.resolve("skewed-write"))
        w.install(guest.shell)
        proc = guest_process.GuestProcess(guest.shell, "skewed-spill")
        command = w.command(seed=1, params={"size_mib": 256, "hot_mib": 32, "ops": 50_000}, wait=proc.gate)
        guest_process.start(proc, command, gated=True, timeout=300)
        placed = buffer_pages_per_node(guest.shell.run(f"cat /proc/{proc.pid}/numa_maps").stdout)
        guest_process.release(proc)
        # first touch filled what was left of node 0, the rest went to node 1
        assert 0 < placed.get(0, 0) <= 128 * 256 and placed.get(1, 0) >= 128 * 256, placed
        assert w.parse(guest_process.finish(proc, timeout=w.timeout_s))["ops"] == 50_000
        # the run left the node with a different free size; settling gives the next run the same one
        assert 92 <= held.settle(96) <= 96 + 2 * squeeze.HUGE_MIB
    finally:
        squeezed = squeeze.node_free_mib(guest.shell, 0)
        held.release()
    # the held memory came back (measured across the release alone: the page cache on the
    # node grows and shrinks on its own, by 44 MiB in one CI run)
    assert squeeze.node_free_mib(guest.shell, 0) >= squeezed + 0.9 * held.held_mib


def test_held_memory_stays_on_the_node_whatever_damon_does(guest):
    held = squeeze.squeeze(guest.shell, 0, leave_mib=96)
    try:
        demote = policies.damos_script([("migrate_cold", *policies.node_span(guest.shell, 0), 1)])
        guest.shell.run(f"sh -c {shlex.quote(demote)}")
        scheme = f"{policies.DAMON_ADMIN}/0/contexts/0/schemes/0/stats/sz_applied"
        moved = 0
        for _ in range(30):  # a second of idleness makes a region cold; DAMOS then demotes it
            time.sleep(1)
            moved = int(guest.shell.run(f"echo update_schemes_stats > {policies.DAMON_ADMIN}/0/state; "
                                        f"cat {scheme}").stdout)
            if moved:
                break
        assert moved > 0, "DAMOS demoted nothing: the test would prove nothing"
        meminfo = guest.shell.run("cat /sys/devices/system/node/node0/meminfo").stdout
        free_huge = int(re.search(r"HugePages_Free:\s+(\d+)", meminfo).group(1))
        assert free_huge * squeeze.HUGE_MIB == held.held_mib  # every held page is still on node 0
    finally:
        policies.stop_damon(guest.shell)
        held.release()


def test_stop_kills_the_whole_group(guest):
    proc = guest_process.GuestProcess(guest.shell, "sleeper")
    guest_process.start(proc, "sleep 600", gated=False)
    assert guest_process.alive(proc)
    guest_process.stop(proc)
    assert not guest_process.alive(proc)
    assert "sleep 600" not in guest.shell.run("ps -eo args").stdout


def test_redis_runs_from_debian_packages_in_the_guest(guest):
    w = workload.load(workload.resolve("redis"))
    assert w.install(guest.shell) == "/usr/local/bin/redis_load"  # a script: copied, not compiled
    proc = guest_process.GuestProcess(guest.shell, "redis")
    keys, value_bytes = 4096, 4096
    command = w.command(seed=1, params={"keys": keys, "value_bytes": value_bytes, "requests": 2000, "clients": 4},
                        wait=proc.gate)
    guest_process.start(proc, command, gated=True, timeout=600)
    try:
        assert guest.shell.run(f"cat /proc/{proc.pid}/comm").stdout.startswith("redis-server")
        status = guest.shell.run(f"cat /proc/{proc.pid}/status").stdout
        rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))
        assert rss_kib * 1024 >= keys * value_bytes  # the values are loaded before the gate opens
    finally:
        guest_process.release(proc)
    figures = w.parse(guest_process.finish(proc, timeout=w.timeout_s))
    assert figures["set_rps"] > 0 and figures["get_rps"] > 0 and figures["p99_ms"] > 0
