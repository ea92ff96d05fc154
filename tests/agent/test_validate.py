"""Checking hints against the machine (a fixture tree): every refusal names what is wrong."""

from __future__ import annotations

import json
import os

import pytest
from llamas_agent.apply import apply_document
from llamas_agent.sysfs import Tree
from llamas_agent.validate import Context, Rejected, _covered, check, margin_kib

from .fixture_tree import add_process, build_tree

AGENT = 999
# The workload (pid 300) has (100 + 16385 + 3) 4 KiB pages and 2 huge pages on node 0.
WORKLOAD_NODE0_KIB = (100 + 16385 + 3) * 4 + 2 * 2048


def ctx_for(tree) -> Context:
    return Context(tree, agent_pids=[AGENT])


def rejected(ctx, hint) -> str:
    with pytest.raises(Rejected) as exc:
        check(ctx, hint)
    return str(exc.value)


def migrate(pid=300, src=(0,), dst=(1,)):
    return {"kind": "migrate_pages", "pid": pid, "from_nodes": list(src), "to_nodes": list(dst)}


@pytest.mark.parametrize("hint, phrase", [
    (migrate(pid=1), "pid 1 (init) is never a target"),
    (migrate(pid=2), "pid 2 is a kernel thread"),
    (migrate(pid=4_000_000), "no process with pid 4000000"),
    (migrate(pid=AGENT), f"pid {AGENT} is the agent itself"),
    (migrate(dst=(7,)), "to_nodes: node 7 does not exist (nodes: [0, 1])"),
    (migrate(src=(0, 1), dst=(1,)), "from_nodes and to_nodes overlap"),
    ({"kind": "move_range", "pid": 300, "start": 4096, "length": 1 << 20, "to_node": 1},
     "range 0x1000+0x100000 is not inside pid 300's mappings"),
    ({"kind": "move_range", "pid": 300, "start": 0x7F3A04000000, "length": 0x200000, "to_node": 1},
     "is not inside"),  # runs past the end of the last anonymous mapping into a gap
    ({"kind": "set_affinity", "pid": 300, "cpus": [0, 5]}, "CPU(s) [5] are not online (online: [0, 1])"),
    ({"kind": "set_policy", "pid": 300, "mode": "bind", "nodes": [1]}, "no interface to set another process's"),
    ({"kind": "set_policy", "launch": "x", "mode": "bind", "nodes": [3]}, "nodes: node 3 does not exist"),
    ({"kind": "set_knob", "knob": "weighted_interleave", "value": {"3": 2}}, "names node '3'"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_hints_that_do_not_fit_the_machine_are_rejected(tree, hint, phrase):
    assert phrase in rejected(ctx_for(tree), hint)


def test_a_node_without_memory_is_no_target(guest_root):
    node2 = guest_root / "sys/devices/system/node/node2"
    node2.mkdir()
    (node2 / "meminfo").write_text("Node 2 MemTotal:       0 kB\nNode 2 MemFree:        0 kB\n")
    assert "node 2 has no memory" in rejected(ctx_for(Tree(str(guest_root))), migrate(dst=(2,)))


def test_knobs_the_kernel_lacks_are_rejected(tmp_path):
    tree = Tree(str(build_tree(tmp_path, knobs=False)))
    why = rejected(ctx_for(tree), {"kind": "set_knob", "knob": "numa_balancing", "value": 1})
    assert why == "knob numa_balancing is not offered by this kernel"


def test_a_move_must_leave_the_safety_margin_free(tmp_path):
    margin = margin_kib({"mem_total_kib": 1_048_576})
    assert margin == int(1_048_576 * 0.05)
    fits = Tree(str(build_tree(tmp_path / "a", node1_free_kib=WORKLOAD_NODE0_KIB + margin)))
    plan = check(ctx_for(fits), migrate())
    assert plan["need_kib"] == WORKLOAD_NODE0_KIB and plan["before_kib"][0] == WORKLOAD_NODE0_KIB
    tight = Tree(str(build_tree(tmp_path / "b", node1_free_kib=WORKLOAD_NODE0_KIB + margin - 1)))
    why = rejected(ctx_for(tight), migrate())
    assert why == (f"move of {WORKLOAD_NODE0_KIB} KiB does not fit: nodes [1] have {WORKLOAD_NODE0_KIB - 1} KiB "
                   "free beyond their safety margin")


def test_a_move_leaves_what_the_targets_zones_hold_back_when_that_is_more(tmp_path):
    # Node 1's one zone holds 20,480 pages (80 MiB) under its high watermark: more than the 5 % margin.
    zones = ("Node 1, zone   Normal\n  pages free     {free}\n        low      17000\n"
             "        high     20480\n        managed  262144\n        protection: (0, 0, 0, 0, 0)\n")
    held_back = 20480 * 4
    assert margin_kib({"mem_total_kib": 1_048_576, "held_back_kib": held_back}) == held_back
    free = WORKLOAD_NODE0_KIB + int(1_048_576 * 0.05)  # enough beyond the 5 % margin alone
    tight = Tree(str(build_tree(tmp_path / "a", node1_free_kib=free, zoneinfo=zones.format(free=free // 4))))
    assert rejected(ctx_for(tight), migrate()).startswith(f"move of {WORKLOAD_NODE0_KIB} KiB does not fit")
    free = WORKLOAD_NODE0_KIB + held_back
    fits = Tree(str(build_tree(tmp_path / "b", node1_free_kib=free, zoneinfo=zones.format(free=free // 4))))
    assert check(ctx_for(fits), migrate())["need_kib"] == WORKLOAD_NODE0_KIB


def test_a_document_sees_the_room_its_earlier_moves_make_and_take(tmp_path):
    margin = margin_kib({"mem_total_kib": 1_048_576})
    ctx = ctx_for(Tree(str(build_tree(tmp_path, node1_free_kib=WORKLOAD_NODE0_KIB + margin))))
    free = {n: node["mem_free_kib"] for n, node in ctx.nodes.items()}
    check(ctx, migrate())
    assert ctx.nodes[0]["mem_free_kib"] == free[0] + WORKLOAD_NODE0_KIB
    assert ctx.nodes[1]["mem_free_kib"] == free[1] - WORKLOAD_NODE0_KIB
    # The same move again no longer fits: the first one took node 1's room.
    assert rejected(ctx, migrate()).endswith("nodes [1] have 0 KiB free beyond their safety margin")


def test_ranges_may_span_adjacent_mappings_but_not_gaps():
    maps = [(0x1000, 0x3000, "rw-p", ""), (0x3000, 0x5000, "rw-p", ""), (0x8000, 0x9000, "rw-p", "")]
    assert _covered(maps, 0x2000, 0x4000)
    assert _covered(maps, 0x8000, 0x9000)
    assert not _covered(maps, 0x4000, 0x8001)
    assert not _covered(maps, 0x0, 0x1001)
    assert not _covered(maps, 0x8fff, 0x9001)


def test_knob_hints_plan_the_previous_value(tree):
    plan = check(ctx_for(tree), {"kind": "set_knob", "knob": "thp_enabled", "value": "never"})
    assert plan == {"previous": "madvise", "value": "never"}


# ---- protected processes: the guest's control path is never slowed down ----------------

SSHD, SESSION_PRIV, SESSION, SHELL, WORKER = 500, 510, 511, 520, 540
RENAMED_SSHD, LISTED, LONG_NAME, THREADED, WIDE = 600, 700, 710, 720, 730
ADMIN_FILE = """\
# processes the testbed must keep responsive
postgres   # the database
a-very-long-process-name
"""


@pytest.fixture
def guarded(guest_root):
    """The fixture machine with an SSH session running the agent (pid AGENT) under a shell, a worker
    that session started, and processes the administrator protects."""
    for pid, comm, ppid, extra in [
        (SSHD, "sshd", 1, {}), (SESSION_PRIV, "sshd-session", SSHD, {}), (SESSION, "sshd-session", SESSION_PRIV, {}),
        (SHELL, "bash", SESSION, {}), (AGENT, "python3", SHELL, {}), (WORKER, "stress", SHELL, {}),
        (RENAMED_SSHD, "renamed", 1, {"exe": "/usr/sbin/sshd"}), (LISTED, "postgres", 1, {}),
        (LONG_NAME, "a-very-long-pro", 1, {}), (THREADED, "postgres", 1, {"nice": 5, "threads": (721,)}),
        (WIDE, "postgres", 1, {"cpus": "0-7"}),
    ]:
        add_process(guest_root, pid, comm, ppid, **extra)
    (guest_root / "etc/llamas-agent").mkdir(parents=True)
    (guest_root / "etc/llamas-agent/protected").write_text(ADMIN_FILE)
    return ctx_for(Tree(str(guest_root)))


def sched(pid, **fields):
    return {"kind": "set_sched", "pid": pid, **fields}


SSH_WHY = "is protected (the SSH daemon, the harness's only way into the guest)"


@pytest.mark.parametrize("hint, phrase", [
    (sched(SSHD, policy="idle"), f"pid {SSHD} (sshd) {SSH_WHY}: the idle class would slow it down"),
    (sched(SSHD, nice=19), "nice 19 (above its current 0) would slow it down"),
    (sched(SSHD, nice=1, policy="normal"), "nice 1 (above its current 0)"),
    (sched(SESSION_PRIV, policy="batch"), f"pid {SESSION_PRIV} (sshd-session) {SSH_WHY}: the batch class"),
    (sched(SESSION, nice=19, policy="idle"), f"pid {SESSION} (sshd-session) {SSH_WHY}"),
    (sched(RENAMED_SSHD, policy="idle"), f"pid {RENAMED_SSHD} (renamed) {SSH_WHY}"),
    (sched(SHELL, nice=19), f"pid {SHELL} (bash) is protected (an ancestor of the agent (pid {AGENT}))"),
    (sched(LISTED, nice=10), "is protected (listed in /etc/llamas-agent/protected): nice 10"),
    (sched(LONG_NAME, policy="idle"), "(listed in /etc/llamas-agent/protected)"),
    (sched(THREADED, nice=3), "nice 3 (above its current 0)"),  # the main thread is at 5, another at 0
    ({"kind": "set_affinity", "pid": SSHD, "cpus": [1]},
     (f"{SSH_WHY}: CPUs [1] (leaving out CPU(s) [0] it may use now) would slow it down; "
      "only changes that do not slow it, and page moves, are allowed")),
], ids=lambda v: v if isinstance(v, str) else None)
def test_hints_that_would_slow_a_protected_process_are_rejected(guarded, hint, phrase):
    assert phrase in rejected(guarded, hint)


@pytest.mark.parametrize("hint", [
    sched(SSHD, nice=0, policy="normal"),
    sched(SSHD, nice=-5),
    sched(THREADED, nice=0),
    {"kind": "set_affinity", "pid": SSHD, "cpus": [0, 1]},
    {"kind": "set_affinity", "pid": WIDE, "cpus": [0, 1]},  # CPUs 2-7 are allowed but not online
    migrate(pid=SSHD),
    migrate(pid=SHELL),
    sched(WORKER, nice=19, policy="idle"),  # what the session starts is the workload hints are for
    sched(300, nice=19, policy="idle"),
], ids=lambda h: f"{h['kind']}-{h['pid']}-{h.get('nice')}-{h.get('policy')}-{h.get('cpus')}")
def test_protected_processes_may_be_sped_up_or_have_their_pages_moved(guarded, hint):
    assert isinstance(check(guarded, hint), dict)


def test_the_administrators_list_takes_names_and_comments(guarded):
    assert guarded.protected_names == {"postgres", "a-very-long-pro"}
    assert guarded.ancestors == {SHELL: AGENT, SESSION: AGENT, SESSION_PRIV: AGENT, SSHD: AGENT, 1: AGENT}


def test_a_refusal_for_protection_is_a_rejected_hint_in_results_and_audit(guarded, records):
    document = json.dumps({"schema_version": 1, "hints": [sched(SSHD, policy="idle"), migrate(pid=SSHD)]})
    result = apply_document(document.encode(), guarded.tree, records, dry_run=True, agent_pids=[AGENT])
    assert [r["status"] for r in result["results"]] == ["rejected", "would_apply"]
    assert SSH_WHY in result["results"][0]["reason"]
    with open(records.audit_path) as f:
        audit = [json.loads(line) for line in f]
    assert audit[0]["status"] == "rejected" and SSH_WHY in audit[0]["reason"]


def test_this_hosts_agent_refuses_to_slow_its_own_parent(records):
    # A dry run: were the check broken, nothing would change still.
    document = json.dumps({"schema_version": 1, "hints": [sched(os.getppid(), nice=19, policy="idle")]})
    result = apply_document(document.encode(), Tree("/"), records, dry_run=True)
    assert result["results"][0]["status"] == "rejected"
    assert f"pid {os.getppid()} (" in result["results"][0]["reason"]
    assert "is protected" in result["results"][0]["reason"]
