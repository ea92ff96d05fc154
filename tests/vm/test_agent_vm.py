"""The guest agent against a real kernel: gather, apply, reject, undo, in one `dram-cxl` guest.

One boot for the whole module (TCG boots cost seconds and the host has two
cores); the tests run in file order and each leaves the guest as it found it,
except for the workload's pages, which the migration tests move on purpose.
"""

from __future__ import annotations

import json

import pytest

from testbed import agent
from testbed.hints import (
    HintDocument,
    MigratePages,
    MoveRange,
    SetAffinity,
    SetKnob,
    SetPolicy,
    SetSched,
)
from testbed.ssh import GuestShell

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

MIB = 1024
WORKLOAD_MIB = 64
# Touches one byte per page of 32 MiB, again and again: memory DAMON must see accessed.
HOT = ("b = bytearray(32 << 20)\nopen('/tmp/{tag}.ready', 'w').close()\nwhile True:\n"
       "    for i in range(0, len(b), 4096):\n        b[i] = (b[i] + 1) & 255\n")


@pytest.fixture(scope="module")
def vm(booted_vm):
    return booted_vm("dram-cxl")


@pytest.fixture(scope="module")
def workload(vm, start_workload):
    pid = start_workload(vm.shell, "wl", WORKLOAD_MIB)
    yield pid
    vm.shell.run(f"kill {pid}", check=False)


def numa_kib(shell, pid: int) -> dict[int, int]:
    """KiB per node of pid, summed from /proc/PID/numa_maps the way numastat does."""
    per_node: dict[int, int] = {}
    for line in shell.run(f"cat /proc/{pid}/numa_maps").stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split()[2:] if "=" in f)
        page_kib = int(fields.get("kernelpagesize_kB", 4))
        for key, value in fields.items():
            if key[0] == "N" and key[1:].isdigit():
                per_node[int(key[1:])] = per_node.get(int(key[1:]), 0) + int(value) * page_kib
    return per_node


def knobs(shell) -> str:
    return shell.run("cat /proc/sys/kernel/numa_balancing /sys/kernel/mm/numa/demotion_enabled "
                     "/sys/kernel/mm/transparent_hugepage/enabled "
                     "/sys/kernel/mm/mempolicy/weighted_interleave/node*").stdout


def snapshot(shell, pid: int) -> tuple:
    """What a rejected hint must leave alone: knobs, the workload's placement and CPUs, the undo record."""
    return (knobs(shell), numa_kib(shell, pid),
            shell.run(f"grep Cpus_allowed_list /proc/{pid}/status").stdout,
            shell.run("cat /var/lib/llamas-agent/undo.json 2>/dev/null || echo none", check=False).stdout)


def assert_unchanged(before: tuple, after: tuple, what: str) -> None:
    """Knobs, CPUs and undo record exactly; placement within 2 MiB per node, because the kernel
    itself reclaims a few file pages of a sleeping process under memory pressure, while a hint
    that had acted would have moved the whole workload."""
    assert (before[0], before[2], before[3]) == (after[0], after[2], after[3]), f"{what} changed the guest"
    for node in set(before[1]) | set(after[1]):
        moved = abs(before[1].get(node, 0) - after[1].get(node, 0))
        assert moved < 2 * MIB, f"{what} moved pages: {before[1]} -> {after[1]}"


def test_gather_reports_nodes_knobs_and_the_workload(vm, workload):
    state = agent.gather(vm.shell)
    assert [n.id for n in state.nodes] == [0, 1]
    assert state.node(1).cpus == [] and state.node(1).mem_total_kib > 512 * MIB
    assert state.knobs.numa_balancing in (0, 1, 2, 3) and state.knobs.thp_enabled in ("always", "madvise", "never")
    assert set(state.knobs.weighted_interleave) == {"0", "1"}
    assert "pgmigrate_success" in state.vmstat and "numa_hint_faults" in state.vmstat
    proc = state.process(workload)
    assert proc is not None and proc.name == "python3"
    assert proc.rss_kib_by_node.get("0", 0) >= WORKLOAD_MIB * MIB
    assert proc.mempolicy and proc.mempolicy.startswith("bind:0")
    assert proc.cpus_allowed == [0, 1]
    assert state.process(2) is None, "kernel threads (kthreadd) must be skipped"
    assert state.process(state.agent_pid) is None


def _bad_documents(pid: int) -> dict[str, tuple[str | bytes, str]]:
    """name -> (document text, a phrase the reason must contain)."""
    def one(hint: dict) -> str:
        return json.dumps({"schema_version": 1, "hints": [hint]})

    return {
        "unknown node": (one({"kind": "migrate_pages", "pid": pid, "from_nodes": [0], "to_nodes": [7]}),
                         "node 7 does not exist"),
        "pid 1": (one({"kind": "migrate_pages", "pid": 1, "from_nodes": [0], "to_nodes": [1]}), "pid 1"),
        "kernel thread": (one({"kind": "set_affinity", "pid": 2, "cpus": [1]}), "kernel thread"),
        "no such pid": (one({"kind": "set_affinity", "pid": 4000000, "cpus": [1]}), "no process"),
        "range outside": (one({"kind": "move_range", "pid": pid, "start": 4096, "length": 1 << 20, "to_node": 1}),
                          "not inside"),
        "offline cpu": (one({"kind": "set_affinity", "pid": pid, "cpus": [5]}), "not online"),
        "policy of another pid": (one({"kind": "set_policy", "pid": pid, "mode": "bind", "nodes": [1]}),
                                  "no interface"),
        "bad knob value": (one({"kind": "set_knob", "knob": "numa_balancing", "value": 9}), "numa_balancing"),
        "malformed JSON": ('{"schema_version": 1, "hints": [', "malformed JSON"),
        "wrong schema version": (json.dumps({"schema_version": 2, "hints": []}), "schema_version must be 1"),
        "huge document": (json.dumps({"schema_version": 1, "hints": [], "source": "x" * 100_000}),
                          "more than the 65536 allowed"),
        "unknown kind": (one({"kind": "format_disk", "pid": pid}), "kind must be one of"),
    }


def test_bad_hints_are_rejected_and_change_nothing(vm, workload):
    before = snapshot(vm.shell, workload)
    for name, (text, phrase) in _bad_documents(workload).items():
        result = agent.apply(vm.shell, text)
        reasons = [result.error] if not result.accepted else [r.reason for r in result.results]
        assert all(r and phrase in r for r in reasons), f"{name}: {reasons}"
        assert all(r.status == "rejected" for r in result.results), name
        assert_unchanged(before, snapshot(vm.shell, workload), name)
    logged = [e for e in agent.audit_log(vm.shell) if e["status"] in ("rejected", "rejected_document")]
    assert len(logged) >= len(_bad_documents(workload))


def test_a_document_with_a_repeated_key_is_refused_whole(vm, workload):
    """`"hints": [], "hints": [a real move]`: Python would apply the move, other parsers nothing."""
    before = snapshot(vm.shell, workload)
    move = json.dumps({"kind": "migrate_pages", "pid": workload, "from_nodes": [0], "to_nodes": [1]})
    agent.upload_text(vm.shell, f'{{"schema_version": 1, "hints": [], "hints": [{move}]}}', "/tmp/repeated.json")
    run = vm.shell.run("llamas-agent apply /tmp/repeated.json", check=False)
    assert run.exit_status == 2, run
    result = json.loads(run.stdout)
    assert not result["accepted"] and result["results"] == []
    assert result["error"].startswith("duplicate key 'hints' in the top-level object"), result["error"]
    assert_unchanged(before, snapshot(vm.shell, workload), "a document with a repeated key")
    assert agent.audit_log(vm.shell)[-1]["status"] == "rejected_document"


def session_chain(shell) -> list[tuple[int, str]]:
    """(pid, comm) of the shell that runs a command and each of its ancestors, up to init."""
    out = shell.run('p=$$; while [ "$p" -gt 1 ]; do echo "$p $(cat /proc/$p/comm)"; '
                    "p=$(cut -d' ' -f4 /proc/$p/stat); done").stdout
    return [(int(pid), comm) for pid, comm in (line.split(" ", 1) for line in out.splitlines())]


def sched_state(shell, pid: int) -> tuple[str, str, str]:
    """Nice level, scheduling class (policy number) and allowed CPUs of pid."""
    stat = shell.run(f"cat /proc/{pid}/stat").stdout.rpartition(")")[2].split()
    cpus = shell.run(f"grep Cpus_allowed_list /proc/{pid}/status").stdout.split(":")[1].strip()
    return stat[16], stat[38], cpus


# A shell that asks the agent it runs to put the shell itself into the idle class at nice 19.
ANCESTOR_SCRIPT = """\
echo '{"schema_version": 1, "hints": [{"kind": "set_sched", "pid": '$$', "nice": 19, "policy": "idle"}]}' >/tmp/anc.json
llamas-agent apply /tmp/anc.json
echo "$? $$"
"""


def test_the_agent_refuses_to_slow_down_sshd_and_its_own_ancestors(vm):
    chain = session_chain(vm.shell)
    sshds = [pid for pid, comm in chain if comm.startswith("sshd")]  # sessions are sshd-session on OpenSSH >= 9.8
    session, listener = sshds[0], sshds[-1]
    assert session != listener, chain
    before = {pid: sched_state(vm.shell, pid) for pid in (listener, session)}
    result = agent.apply(vm.shell, HintDocument(hints=[
        SetSched(pid=listener, nice=19, policy="idle"), SetSched(pid=session, nice=19, policy="idle"),
        SetSched(pid=listener, nice=19), SetSched(pid=session, policy="batch"),
        SetAffinity(pid=listener, cpus=[1]),
        MigratePages(pid=listener, from_nodes=[0], to_nodes=[1])]))
    print(f"session {chain}: " + "; ".join(f"{r.status}: {r.reason}" for r in result.results))
    assert [r.status for r in result.results] == ["rejected"] * 5 + ["applied"]
    for r in result.results[:5]:
        assert "is protected (the SSH daemon, the harness's only way into the guest)" in r.reason, r.reason
    assert "leaving out CPU(s) [0]" in result.results[4].reason
    assert {pid: sched_state(vm.shell, pid) for pid in (listener, session)} == before
    back = agent.apply(vm.shell, HintDocument(hints=[MigratePages(pid=listener, from_nodes=[1], to_nodes=[0])]))
    assert back.all_applied, back
    logged = agent.audit_log(vm.shell)[-7:-2]
    assert [(e["status"], e["hint"]["kind"]) for e in logged] == [("rejected", "set_sched")] * 4 + [
        ("rejected", "set_affinity")]

    # The shell that runs the agent is its ancestor (the agent prints its result, then the shell its pid).
    agent.upload_text(vm.shell, ANCESTOR_SCRIPT, "/tmp/ancestor.sh")
    lines = vm.shell.run("sh /tmp/ancestor.sh").stdout.splitlines()
    status, shell_pid = lines[-1].split()
    (refused,) = json.loads("\n".join(lines[:-1]))["results"]
    assert status == "3" and refused["status"] == "rejected", lines
    assert refused["reason"].startswith(f"pid {shell_pid} (sh) is protected (an ancestor of the agent"), refused

    # A name the administrator lists in the guest is protected too.
    sleeper = int(vm.shell.run("setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!").stdout)
    try:
        vm.shell.run("mkdir -p /etc/llamas-agent && printf '# keep\\nsleep  # a test\\n' > /etc/llamas-agent/protected")
        listed = agent.apply(vm.shell, HintDocument(hints=[SetSched(pid=sleeper, policy="idle")]))
        assert "is protected (listed in /etc/llamas-agent/protected)" in listed.results[0].reason, listed
    finally:
        vm.shell.run(f"rm -f /etc/llamas-agent/protected; kill {sleeper}", check=False)

    # SSH still answers: a fresh connection, a command, at once.
    fresh = GuestShell(vm.shell.port, vm.shell.client_key, vm.shell.host_key)
    try:
        fresh.wait_ready(30, alive=lambda: True)
        assert fresh.run("echo ok").stdout.strip() == "ok"
    finally:
        fresh.close()


def test_move_larger_than_free_memory_is_rejected(vm, workload, start_workload):
    state = agent.gather(vm.shell)
    free_mib = state.node(1).mem_free_kib // MIB
    # Leave 90 MiB free on node 1: more than the workload needs, less than that plus the
    # agent's margin (at least 32 MiB, 5% of the node), so only the margin check refuses it.
    hog = start_workload(vm.shell, "hog", free_mib - 90, policy="--policy bind --nodes 1")
    try:
        before = snapshot(vm.shell, workload)
        result = agent.apply(vm.shell, HintDocument(hints=[
            MigratePages(pid=workload, from_nodes=[0], to_nodes=[1])]))
        assert result.results[0].status == "rejected"
        assert "does not fit" in result.results[0].reason
        assert_unchanged(before, snapshot(vm.shell, workload), "a move larger than free memory")
    finally:
        vm.shell.run(f"kill {hog}; while kill -0 {hog} 2>/dev/null; do sleep 0.2; done", check=False)


def test_dry_run_reports_and_moves_nothing(vm, workload):
    # No page migrated anywhere (pgmigrate_success), and the buffer did not go to node 1. Its
    # exact per-node counts are not compared: khugepaged may collapse pages meanwhile (THP is
    # "always" in the guest), which changes numa_maps without a migration.
    def migrated() -> int:
        return int(vm.shell.run("awk '/^pgmigrate_success /{print $2}' /proc/vmstat").stdout)

    before, node1_kib = migrated(), numa_kib(vm.shell, workload).get(1, 0)
    result = agent.apply(vm.shell, HintDocument(hints=[MigratePages(pid=workload, from_nodes=[0], to_nodes=[1])]),
                         dry_run=True)
    assert result.results[0].status == "would_apply"
    assert result.results[0].effect["need_kib"] >= WORKLOAD_MIB * MIB
    assert migrated() == before
    assert numa_kib(vm.shell, workload).get(1, 0) <= node1_kib + 2 * MIB  # one huge page at most


def big_mapping_line(shell, pid: int) -> str:
    """The numa_maps line of pid's largest mapping (the workload's buffer)."""
    start, _ = _largest_mapping(shell, pid)
    return shell.run(f"grep '^{start:x} ' /proc/{pid}/numa_maps").stdout.strip()


def test_migrate_pages_moves_the_workload_to_node_1(vm, workload):
    lines_before = big_mapping_line(vm.shell, workload)
    before = numa_kib(vm.shell, workload)
    assert before.get(0, 0) >= WORKLOAD_MIB * MIB
    result = agent.apply(vm.shell, HintDocument(hints=[
        MigratePages(id="to-cxl", pid=workload, from_nodes=[0], to_nodes=[1], reason="cold data")]))
    assert result.all_applied, result
    after = numa_kib(vm.shell, workload)
    lines_after = big_mapping_line(vm.shell, workload)
    print(f"numa_maps of pid {workload}, largest mapping, before:\n{lines_before}\nafter:\n{lines_after}")
    print(f"numa_maps KiB per node before {before} after {after}; effect {result.results[0].effect}")
    assert after.get(1, 0) - before.get(1, 0) >= WORKLOAD_MIB * MIB
    assert after.get(0, 0) <= before.get(0, 0) - WORKLOAD_MIB * MIB
    assert result.results[0].effect["moved_kib"]["1"] >= WORKLOAD_MIB * MIB


def _largest_mapping(shell, pid: int) -> tuple[int, int]:
    spans = []
    for line in shell.run(f"cat /proc/{pid}/maps").stdout.splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        spans.append((hi - lo, lo))
    size, start = max(spans)
    return start, size


def test_move_range_brings_one_range_back_to_node_0(vm, workload):
    start, size = _largest_mapping(vm.shell, workload)
    assert size >= WORKLOAD_MIB << 20
    before = numa_kib(vm.shell, workload)
    length = 16 << 20
    result = agent.apply(vm.shell, HintDocument(hints=[
        MoveRange(pid=workload, start=start, length=length, to_node=0)]))
    assert result.all_applied, result
    effect = result.results[0].effect
    assert effect["moved_pages_from_node"].get("1", 0) >= 4000
    after = numa_kib(vm.shell, workload)
    assert after[0] - before.get(0, 0) >= 15 * MIB


def test_knobs_and_affinity_are_applied_then_undone(vm, workload):
    knobs_before = knobs(vm.shell)
    result = agent.apply(vm.shell, HintDocument(hints=[
        SetKnob(knob="numa_balancing", value=2),
        SetKnob(knob="demotion_enabled", value=True),
        SetKnob(knob="weighted_interleave", value={"0": 3, "1": 1}),
        SetAffinity(pid=workload, cpus=[1]),
        SetSched(pid=workload, nice=10, policy="batch"),
    ]))
    assert result.all_applied, result
    stat = vm.shell.run(f"cat /proc/{workload}/stat").stdout.rpartition(")")[2].split()
    assert (stat[16], stat[38]) == ("10", "3")  # nice, SCHED_BATCH
    changed = knobs(vm.shell)
    assert changed.split()[:2] == ["2", "true"] and changed.split()[-2:] == ["3", "1"]
    assert vm.shell.run(f"grep Cpus_allowed_list /proc/{workload}/status").stdout.split(":")[1].lstrip("\t ") == "1\n"
    report = agent.undo(vm.shell)
    assert [u["status"] for u in report["undone"]] == ["restored"] * 5
    stat = vm.shell.run(f"cat /proc/{workload}/stat").stdout.rpartition(")")[2].split()
    assert (stat[16], stat[38]) == ("0", "0")
    assert knobs(vm.shell) == knobs_before
    assert "0-1" in vm.shell.run(f"grep Cpus_allowed_list /proc/{workload}/status").stdout
    assert [e["action"] for e in agent.audit_log(vm.shell)][-5:] == ["undo"] * 5


def test_launch_policy_places_a_new_program_and_is_undone(vm, start_workload):
    result = agent.apply(vm.shell, HintDocument(hints=[SetPolicy(launch="bench", mode="bind", nodes=[1])]))
    assert result.all_applied, result
    pid = start_workload(vm.shell, "launched", 16, policy="--as bench")
    try:
        placed = numa_kib(vm.shell, pid)
        assert placed.get(1, 0) >= 16 * MIB and placed.get(1, 0) > placed.get(0, 0)
    finally:
        vm.shell.run(f"kill {pid}", check=False)
    agent.undo(vm.shell)
    assert vm.shell.run("cat /var/lib/llamas-agent/launch-policies.json").stdout.strip() == "{}"


def test_gather_with_damon_sees_processes_touching_their_memory(vm, workload, start_workload):
    # Two hot processes share CPU 1: DAMON clears a page's Accessed bit without a TLB flush, and
    # QEMU's software TLB (unlike a hardware one) holds every page of a small loop, so a process
    # alone on its vCPU is never seen again; switching between them reloads CR3 and flushes it.
    hot = [start_workload(vm.shell, f"hot{i}", policy="", program=HOT, wrapper="taskset -c 1") for i in (1, 2)]
    try:
        state = agent.gather(vm.shell, damon_seconds=2, damon_pids=[*hot, workload])
        assert state.damon is not None and state.damon.error is None, state.damon
        for pid in hot:  # the two busy loops share CPU 1: about half a CPU each, and CPU 1 is where they ran
            busy = state.process(pid)
            assert busy.last_cpu == 1 and 20 <= busy.cpu_percent <= 100, busy
        assert state.process(workload).cpu_percent < 5  # asleep
        idle = max((r.nr_accesses for r in state.damon.regions.get(str(workload)) or []), default=0)
        for pid in hot:
            regions = state.damon.regions.get(str(pid))
            assert regions, f"no DAMON regions for the hot process {pid}: {state.damon}"
            hits = [r.nr_accesses for r in regions]
            assert hits == sorted(hits, reverse=True), "regions come hottest first"
            assert all(r.start < r.end for r in regions)
            assert hits[0] > idle, f"hot process {pid} ({hits[:3]}) not hotter than the sleeping workload ({idle})"
            print(f"DAMON, hottest regions of pid {pid}: {regions[:2]}; sleeping workload's hottest: {idle}")
    finally:
        vm.shell.run(f"kill {hot[0]} {hot[1]}", check=False)
    assert vm.shell.run("cat /sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds").stdout.strip() == "0"
