"""`llamas-agent enforce` against a real kernel on dram-nvm (NVM that reads tolerably and writes slowly): a
write-aware policy keeps the written buffer in DRAM and the read-only one on NVM; undo stops the daemon
and puts every page back.  One boot, one workload."""

from __future__ import annotations

import json
import shlex
import time

import pytest

from testbed import agent
from testbed.vm import GUEST_AGENT_PATH

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

BUFFER_MIB = 24
INTERVAL_S = 2
# Two buffers, both touched a page at a time, again and again: one written, one only read.
PROGRAM = """\
import ctypes
n = {mib} << 20
written = bytearray(n)
read = b'\\x01' * n
addresses = (ctypes.addressof((ctypes.c_char * n).from_buffer(written)),
             ctypes.cast(ctypes.c_char_p(read), ctypes.c_void_p).value)
open('/tmp/{tag}.addr', 'w').write('%d %d' % addresses)
open('/tmp/{tag}.ready', 'w').close()
total = 0
while True:
    for i in range(0, n, 4096):
        written[i] = (written[i] + 1) & 255
    for i in range(0, n, 4096):
        total += read[i]
"""
WRITE_AWARE = {
    "schema": "placement-policy-v1",
    "name": "write-aware",
    "description": "Node 1 is NVM: reads tolerably, writes slowly. Written memory belongs in DRAM.",
    "limits": {"keep_free_mib": {"0": 64}, "bandwidth_mib_s": 64, "interval_s": INTERVAL_S},
    "rules": [
        {"id": "writes-to-dram", "match": {"write": "write-heavy"}, "nodes": [0]},
        {"id": "reads-to-nvm", "match": {"write": "read-mostly"}, "nodes": [1, 0]},
    ],
}


def _with(**changes) -> str:
    return json.dumps({**WRITE_AWARE, **changes})


# name -> (policy text, a phrase of the refusal)
BAD_POLICIES = {
    "unknown node": (_with(rules=[{"match": {}, "nodes": [0, 7]}]), "rules[0].nodes: node 7 does not exist"),
    "contradictory rules": (_with(rules=[{"match": {"write": "read-mostly"}, "nodes": [1]},
                                         {"match": {"write": "read-mostly"}, "nodes": [0]}]),
                            "rules[1] can never apply"),
    "zero bandwidth": (_with(limits={"bandwidth_mib_s": 0, "interval_s": 2}), "limits.bandwidth_mib_s"),
    "huge interval": (_with(limits={"bandwidth_mib_s": 8, "interval_s": 86400}), "limits.interval_s"),
    "keeping a whole node free": (_with(limits={"bandwidth_mib_s": 8, "interval_s": 2,
                                                "keep_free_mib": {"1": 4096}}), "is not less than node 1's"),
    "a rule naming a pid": (_with(rules=[{"match": {"pid": 1}, "nodes": [0]}]), "unknown field(s) ['pid']"),
    "malformed JSON": ('{"schema": "placement-policy-v1", "rules": [', "malformed JSON"),
    "repeated key": ('{"schema": "placement-policy-v1", "schema": "x"}', "duplicate key 'schema'"),
    "huge document": (_with(description="x" * 20000), "more than the 16384 allowed"),
}


@pytest.fixture(scope="module")
def vm(booted_vm):
    return booted_vm("dram-nvm")


def buffer_kib(shell, pid: int, address: int) -> dict[int, int]:
    """KiB per node of the BUFFER_MIB at `address` in pid, page by page from move_pages(2) (the two buffers
    share one mapping once the kernel merges them, so numa_maps cannot tell them apart)."""
    script = (f"import sys, json; sys.path.insert(0, {GUEST_AGENT_PATH!r}); from llamas_agent.validate import locate; "
              f"nodes = locate({pid}, list(range({address}, {address + (BUFFER_MIB << 20)}, 4096))); "
              "print(json.dumps({n: nodes.count(n) for n in set(nodes)}))")
    pages = json.loads(shell.run(f"python3 -c {shlex.quote(script)}").stdout)
    return {int(n): count * 4 for n, count in pages.items() if int(n) >= 0}


def vmstat(shell, name: str) -> int:
    return int(shell.run(f"grep '^{name} ' /proc/vmstat").stdout.split()[1])


def share(kib: dict[int, int], node: int) -> float:
    return kib.get(node, 0) / max(1, sum(kib.values()))


def rounds(shell) -> list[dict]:
    return [e for e in agent.audit_log(shell) if e["action"] == "enforce_round"]


def test_a_write_aware_policy_splits_the_buffers_and_undo_puts_them_back(vm, start_workload):
    shell = vm.shell
    # Debian's kernel has no idle page tracking, so the agent sees reads through DAMON. DAMON clears a page's
    # accessed bit without a TLB flush, and QEMU's software TLB keeps every page of a loop that runs alone on
    # its vCPU: a spinner on the same vCPU makes the guest switch address spaces, which flushes it.
    # NUMA balancing (on by default in this guest) would move pages too: the test measures the agent alone.
    balancing = shell.run("cat /proc/sys/kernel/numa_balancing").stdout.strip()
    shell.run("echo 0 > /proc/sys/kernel/numa_balancing")
    spinner = int(shell.run("setsid taskset -c 1 sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & "
                            "echo $!").stdout)
    pid = start_workload(shell, "enf", BUFFER_MIB, policy="--policy interleave --nodes 0-1", program=PROGRAM,
                         wrapper="taskset -c 1")
    try:
        written, read = (int(a) for a in shell.run("cat /tmp/enf.addr").stdout.split())
        before = {b: buffer_kib(shell, pid, a) for b, a in (("written", written), ("read", read))}
        assert all(0.3 < share(kib, 0) < 0.7 for kib in before.values()), before  # interleaved: half on each

        # Bad policies are refused with the reason, and nothing moves: no page migrated (khugepaged may still
        # collapse interleaved pages into a huge page on one node, which is no migration), no round, no undo.
        migrated = vmstat(shell, "pgmigrate_success")
        for name, (text, phrase) in BAD_POLICIES.items():
            agent.upload_text(shell, text, "/tmp/bad.json")
            bad = shell.run("llamas-agent enforce /tmp/bad.json --rounds 1", check=False)
            assert bad.exit_status == 2 and phrase in json.loads(bad.stdout)["error"], (name, bad)
            assert agent.audit_log(shell)[-1]["status"] == "rejected", name
        assert vmstat(shell, "pgmigrate_success") == migrated
        assert not rounds(shell)
        assert shell.run("cat /var/lib/llamas-agent/undo.json 2>/dev/null || echo '[]'").stdout.strip() == "[]"

        agent.upload_text(shell, json.dumps(WRITE_AWARE), "/tmp/policy.json")
        daemon = int(shell.run("setsid llamas-agent enforce /tmp/policy.json </dev/null >/tmp/enforce.log 2>&1 "
                               "& echo $!").stdout)
        deadline = time.monotonic() + 180
        while len(rounds(shell)) < 3:
            assert shell.run(f"kill -0 {daemon}", check=False).ok, shell.run("cat /tmp/enforce.log").stdout
            assert time.monotonic() < deadline, "the daemon did not finish 3 rounds in 180 s"
            time.sleep(1)
        during = {b: buffer_kib(shell, pid, a) for b, a in (("written", written), ("read", read))}
        records = rounds(shell)
        for r in records:
            print(f"round {r['round']}: moved {r['moved_bytes'] >> 10} KiB {r['moved_bytes_by_rule']}, failed "
                  f"{r['failed_pages']}, "
                  f"{r['seconds']} s, CPU {r['cpu_seconds']} s ({r['cpu_percent']} %), heat {r['heat']}, classes "
                  f"{ {k: {n: b >> 10 for n, b in v.items()} for k, v in r['bytes_by_class'].items()} } KiB")
        print(f"KiB per node before {before}, during {during}")
        # The buffers are neighbours in one mapping: the 2 MiB chunk (a huge page, where THP is on) holding the
        # end of one and the start of the other has one class, so up to 2 MiB of one buffer may follow the other.
        assert during["written"].get(1, 0) <= 2048 and during["written"].get(0, 0) >= (BUFFER_MIB - 2) << 10, during
        assert during["read"].get(0, 0) <= 2048 and during["read"].get(1, 0) >= (BUFFER_MIB - 2) << 10, during
        assert all(r["heat"] in ("page_idle", "damon") and r["moved_bytes"] <= r["budget_bytes"] for r in records)
        assert all(pid in r["processes"] for r in records)
        sshd = {int(p) for p in shell.run("pidof sshd sshd-session", check=False).stdout.split()}
        assert sshd and not any(sshd & set(r["processes"]) for r in records), "a protected process was in scope"
        misplaced_kib = before["written"].get(1, 0) + before["read"].get(0, 0)  # what the policy had to move
        assert sum(r["moved_bytes"] for r in records) >= (misplaced_kib - 2048) << 10
        assert all(r["cpu_seconds"] >= 0 and r["cpu_seconds_total"] >= r["cpu_seconds"] for r in records)

        report = agent.undo(shell)
        (entry,) = [u for u in report["undone"] if u["entry"]["type"] == "enforce"]
        assert entry["status"] == "restored" and entry["detail"]["daemon"] == "stopped", entry
        # Every page the rounds moved goes back (a page the kernel refused, EBUSY after retries, never left its
        # node). A page moved twice goes back once, and only if it is not already home: the 2 MiB chunk that
        # straddles the buffers may go one way in a round and back in the next.
        moved_pages = sum(r["moved_bytes"] for r in records) // 4096
        assert entry["detail"]["restored_pages"] >= moved_pages - 512, (entry, moved_pages)
        assert not shell.run(f"kill -0 {daemon}", check=False).ok
        after = {b: buffer_kib(shell, pid, a) for b, a in (("written", written), ("read", read))}
        print(f"after undo {after}; undo {entry['detail']}")
        # Page by page, except where khugepaged has since made 4 KiB pages into a huge page (THP is `always`):
        # that lies on one node and goes back whole, so up to 2 MiB per buffer may differ from the start.
        for b, kib in before.items():
            for node in (0, 1):
                assert abs(after[b].get(node, 0) - kib.get(node, 0)) <= 2048, (b, before, after)
    finally:
        shell.run(f"kill {pid} {spinner}; echo {balancing} > /proc/sys/kernel/numa_balancing", check=False)
